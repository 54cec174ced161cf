/**
 * One scenario's HTTP server (child process entry): builds the app named in argv[2], listens on
 * 127.0.0.1 on a free port, tells the parent the port, answers its requests for this process's
 * CPU time, and serves until the parent kills it.
 */
import './native-stacks';
import { SCENARIOS } from './apps';

async function main(): Promise<void> {
  const scenario = SCENARIOS[process.argv[2]];
  if (scenario === undefined) throw new Error(`unknown scenario ${process.argv[2]}`);
  const app = await scenario.build();
  const port = await app.listen();
  // The parent asks for this process's CPU time around each run: the server's own cost per request.
  process.on('message', (message) => {
    if (message !== 'cpu') return;
    const used = process.cpuUsage();
    process.send!({ cpu: used.user + used.system });
  });
  process.send!({ port });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}

main().catch((error: unknown) => {
  console.log(error);
  process.exit(1);
});
