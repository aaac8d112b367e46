// A document of pages, edited by handlers (the seed's "updated a page of a document").
// Every edit is one transaction on the heap: a failed edit leaves the document as it was.
const MAX_PAGE_CHARS = 16 * 1024;

function page(ctx, n) {
  if (!Number.isInteger(n) || n < 0 || n >= ctx.root.pages.length) {
    throw new Error(`page must be an integer in 0..${ctx.root.pages.length - 1}, got ${JSON.stringify(n)}`);
  }
  return ctx.root.pages[n];
}

function text(value) {
  if (typeof value !== 'string') throw new Error(`text must be a string, got ${typeof value}`);
  if (value.length > MAX_PAGE_CHARS) throw new Error(`text is ${value.length} characters; a page holds ${MAX_PAGE_CHARS}`);
  return value;
}

export default {
  name: 'notes',
  version: '1.0.0',
  requirements: { minHeapBytes: 64 * 1024 },
  init(ctx) {
    ctx.root.title = 'Untitled';
    ctx.root.pages = [];
    ctx.root.edits = 0;
  },
  handlers: {
    // { text } → appends a page, returns its number.
    add(ctx, m) {
      const t = text(m && m.text);
      ctx.root.pages.push({ text: t, updatedAt: ctx.now(), revision: 1 });
      ctx.root.edits++;
      return { page: ctx.root.pages.length - 1, pages: ctx.root.pages.length };
    },
    // { page, text } → replaces a page's text.
    update(ctx, m) {
      const p = page(ctx, m && m.page);
      p.text = text(m.text);
      p.updatedAt = ctx.now();
      p.revision++;
      ctx.root.edits++;
      return { page: m.page, revision: p.revision };
    },
    // { page } → removes a page; later pages move up.
    remove(ctx, m) {
      page(ctx, m && m.page);
      ctx.root.pages.splice(m.page, 1);
      ctx.root.edits++;
      return { pages: ctx.root.pages.length };
    },
    // { title }
    retitle(ctx, m) {
      ctx.root.title = text(m && m.title).slice(0, 200);
      ctx.root.edits++;
      return { title: ctx.root.title };
    },
    // { page } → one page.
    read(ctx, m) {
      const p = page(ctx, m && m.page);
      return { page: m.page, text: p.text, revision: p.revision, updatedAt: p.updatedAt };
    },
    // → the outline: title and each page's first line.
    outline(ctx) {
      return {
        title: ctx.root.title,
        edits: ctx.root.edits,
        pages: ctx.root.pages.map((p, i) => ({ page: i, first: p.text.split('\n')[0].slice(0, 60), revision: p.revision })),
      };
    },
  },
};
