/**
 * A profiling target, not a benchmark: injects <requests> requests into one scenario's app (as
 * bench/cpu-compare.ts does), so that `node --cpu-prof` can record where the time goes.
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/bench-prof -r ts-node/register/transpile-only \
 *     bench/profile.ts suiteTask 200000
 *   node -r ts-node/register/transpile-only bench/cpuprofile-summary.ts /tmp/bench-prof/*.cpuprofile
 *
 * Write profiles outside the repository (as above): .cpuprofile files are not to be committed.
 */
import './native-stacks';
import { setImmediate as tick } from 'node:timers/promises';
import inject from 'light-my-request';
import { SCENARIOS } from './apps';

async function main(): Promise<void> {
  const [name, requestsArg = '100000'] = process.argv.slice(2);
  const scenario = SCENARIOS[name];
  if (scenario === undefined)
    throw new Error(`unknown scenario "${name}"; known: ${Object.keys(SCENARIOS).join(', ')}`);
  const app = await scenario.build();
  const requests = Number(requestsArg);
  const start = process.cpuUsage();
  for (let i = 0; i < requests; i++) {
    await inject(app.handler, { method: 'GET', url: '/' });
    if (i % 250 === 249) {
      await app.idle();
      await tick();
    }
  }
  await app.idle();
  const used = process.cpuUsage(start);
  console.log(`${name}: ${((used.user + used.system) / requests).toFixed(2)} CPU µs per request`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
