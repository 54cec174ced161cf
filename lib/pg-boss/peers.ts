/**
 * The first import of the `/pg-boss` entry point. pg-boss is an optional peer dependency, and an
 * ES module that Node loads from CommonJS only from 22.12 on (`require(esm)`, which pg-boss 12
 * relies on): this throws an Error that says which is missing, before anything requires it.
 */
import { checkEntryNeeds } from '../peers';

checkEntryNeeds({
  entry: 'express-background-tasks/pg-boss',
  peers: ['pg-boss'],
  node: [22, 12],
  nodeReason: 'pg-boss 12 is an ES module, loaded here with require(esm)',
});
