// The re-run page: a click on a picture sets that image's focal point (its text field holds
// it as "x, y" percentages, which also works without this script), and a mark shows it.
(() => {
  const parse = (text) => {
    const match = /^\s*([\d.]+)\s*%?\s*,\s*([\d.]+)\s*%?\s*$/.exec(text);
    return match ? [Number(match[1]), Number(match[2])] : null;
  };
  for (const pick of document.querySelectorAll(".focus-pick")) {
    const input = document.getElementById(pick.dataset.for);
    const mark = pick.querySelector(".focus-mark");
    const show = () => {
      const point = parse(input.value);
      mark.hidden = !point;
      if (point) {
        mark.style.left = `${point[0]}%`;
        mark.style.top = `${point[1]}%`;
      }
    };
    pick.addEventListener("click", (event) => {
      const box = pick.querySelector("img").getBoundingClientRect();
      const across = Math.round(((event.clientX - box.left) / box.width) * 100);
      const down = Math.round(((event.clientY - box.top) / box.height) * 100);
      input.value = `${Math.min(100, Math.max(0, across))}, ${Math.min(100, Math.max(0, down))}`;
      show();
    });
    input.addEventListener("input", show);
    show();
  }
})();
