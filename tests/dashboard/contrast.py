"""WCAG 2.x contrast of every text the browser renders, from computed styles.

For each element with its own visible text, the text colour is composed over the first
opaque-enough background found walking up the tree (the way the page paints it), and the
ratio is checked against AA: 4.5:1, or 3:1 for large text (24px, or 18.66px bold).
"""

from __future__ import annotations

import re
from typing import Any

from selenium import webdriver

_COLLECT = """
const out = [];
function rgba(s) { const m = s.match(/[\\d.]+/g) || [0,0,0,0];
  return [+m[0], +m[1], +m[2], m.length > 3 ? +m[3] : 1]; }
function background(el) {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  layers.push([255, 255, 255, 1]);
  let [r, g, b] = layers[layers.length - 1];
  for (let i = layers.length - 2; i >= 0; i--) {
    const [lr, lg, lb, la] = layers[i];
    r = lr * la + r * (1 - la); g = lg * la + g * (1 - la); b = lb * la + b * (1 - la);
  }
  return [r, g, b];
}
for (const el of document.querySelectorAll("body *")) {
  const own = [...el.childNodes].filter(n => n.nodeType === 3 && n.textContent.trim());
  if (!own.length) continue;
  const s = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  if (s.visibility === "hidden" || s.display === "none" || box.width === 0) continue;
  if (el.closest("svg") || el.closest("details:not([open]) > :not(summary)")) continue;
  if (box.bottom < 0) continue;  // off-screen on purpose (the skip link until focused)
  out.push({text: own[0].textContent.trim().slice(0, 40), tag: el.tagName,
            fg: rgba(s.color), bg: background(el), size: parseFloat(s.fontSize),
            bold: parseInt(s.fontWeight, 10) >= 700, disabled: !!el.disabled});
}
return out;
"""


def _luminance(rgb: list[float]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(fg: list[float], bg: list[float]) -> float:
    alpha = fg[3] if len(fg) > 3 else 1.0
    text = [fg[i] * alpha + bg[i] * (1 - alpha) for i in range(3)]
    lighter, darker = sorted((_luminance(text), _luminance(bg)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def low_contrast(driver: webdriver.Chrome) -> list[str]:
    """Every rendered text below AA, as ``"TAG 'text' 3.2:1"``; empty when all pass."""
    found: list[dict[str, Any]] = driver.execute_script(_COLLECT)
    assert found, "no text found on the page"
    problems = []
    for item in found:
        if item["disabled"]:
            continue  # WCAG 1.4.3 exempts inactive controls
        large = item["size"] >= 24 or (item["bold"] and item["size"] >= 18.66)
        value = ratio(item["fg"], item["bg"])
        if value < (3.0 if large else 4.5):
            text = re.sub(r"\s+", " ", item["text"])
            problems.append(f"{item['tag']} {text!r} {value:.2f}:1")
    return problems
