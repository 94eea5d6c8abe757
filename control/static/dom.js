// Small DOM helpers shared by the page's views; text always goes in as text, never as HTML.

// el("td", { className: "x", dataset: { id: "1" } }, "text", childNode...)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  node.append(...children.map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

// The API's "YYYY-MM-DD HH:MM:SS(.ffffff)" UTC timestamps, in the viewer's local time.
export function shortTime(tm) {
  if (!tm) return "–";
  const when = new Date(tm.replace(" ", "T") + (tm.endsWith("Z") ? "" : "Z"));
  return Number.isNaN(when.getTime()) ? tm : when.toLocaleString();
}
