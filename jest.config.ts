import type { Config } from 'jest';

/** ES-module-only packages that the test process loads (see jest.esm-transform.js). */
const ESM_ONLY = ['pg-boss', 'serialize-error', 'non-error'];

const config: Config = {
  testEnvironment: 'node',
  roots: ['<rootDir>/__tests__'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
    [`/node_modules/(${ESM_ONLY.join('|')})/.+\\.js$`]: '<rootDir>/jest.esm-transform.js',
  },
  transformIgnorePatterns: [`/node_modules/(?!(${ESM_ONLY.join('|')})/)`],
  testTimeout: 20_000,
};

export default config;
