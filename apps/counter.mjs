// The smallest Ferry app: one number in the heap, handlers that change it.
export default {
  name: 'counter',
  version: '1.0.0',
  requirements: { minHeapBytes: 16 * 1024 },
  init(ctx) {
    ctx.root.count = 0;
  },
  handlers: {
    increment(ctx, message) {
      const by = message && typeof message.by === 'number' ? message.by : 1;
      ctx.root.count += by;
      return { count: ctx.root.count };
    },
    get(ctx) {
      return { count: ctx.root.count };
    },
    reset(ctx) {
      ctx.root.count = 0;
      return { count: 0 };
    },
  },
};
