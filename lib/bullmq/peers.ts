/**
 * The first import of the `/bullmq` entry point. bullmq and ioredis are optional peer
 * dependencies: this checks that both can be found before anything requires them, and otherwise
 * throws an Error that names the missing ones and the command that installs them.
 */
import { checkEntryNeeds } from '../peers';

checkEntryNeeds({ entry: 'express-background-tasks/bullmq', peers: ['bullmq', 'ioredis'] });
