// Tests start real nats-server processes through the same code as the demo and the bench.
export * from '../../scripts/nats-server-process.mjs';
