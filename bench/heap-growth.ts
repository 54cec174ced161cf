/**
 * Memory check (child process entry, run with --expose-gc): the heap after N requests that each
 * queue a no-op task (scenario 5, injected with light-my-request, tasks drained), after GC,
 * compared with the heap after a warm-up of the same app. A leak per request or per task shows
 * as growth; the target is at most 10 MB. The loop yields to the event loop every 100 requests:
 * light-my-request's null socket defers a callback per request to setImmediate, and a loop that
 * never yields would hold every request in those callbacks (~9 KB each), which is no leak of the
 * suite.
 *
 * Usage: heap-growth.ts <requests>
 */
import './native-stacks';
import { setImmediate as tick } from 'node:timers/promises';
import inject from 'light-my-request';
import { SCENARIOS } from './apps';
import { childMain } from './children';
import { heapAfterGc } from './heap';

export interface GrowthResult {
  requests: number;
  warmupRequests: number;
  heapAfterWarmup: number;
  heapAfter: number;
  growth: number;
}

async function main(): Promise<GrowthResult> {
  const requests = Number(process.argv[2]);
  const app = await SCENARIOS.suiteTask.build();
  const drive = async (count: number) => {
    for (let done = 0; done < count; done++) {
      await inject(app.handler, { method: 'GET', url: '/' });
      if (done % 100 === 99) {
        await app.idle();
        await tick();
      }
    }
    await app.idle();
    await tick();
  };
  const warmupRequests = Math.min(20_000, requests);
  await drive(warmupRequests);
  const heapAfterWarmup = heapAfterGc();
  await drive(requests);
  const heapAfter = heapAfterGc();
  return {
    requests,
    warmupRequests,
    heapAfterWarmup,
    heapAfter,
    growth: heapAfter - heapAfterWarmup,
  };
}

childMain(main);
