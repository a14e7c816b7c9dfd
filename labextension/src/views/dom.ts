/** A tiny element builder, so views read as the structure they draw. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'class') {
      el.className = value;
    } else {
      el.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      el.append(child);
    }
  }
  return el;
}

export function button(label: string, title: string, onClick: () => void, cls = ''): HTMLButtonElement {
  const b = h('button', { class: `jp-FaaS-button ${cls}`.trim(), title, type: 'button' }, label);
  b.addEventListener('click', event => {
    event.stopPropagation();
    onClick();
  });
  return b;
}

/** Replace a node's children, skipping the nulls that conditional parts leave. */
export function fill(node: HTMLElement, ...children: (Node | string | null | undefined)[]): void {
  node.replaceChildren(...children.filter((c): c is Node | string => c !== null && c !== undefined));
}
