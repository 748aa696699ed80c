// A calm animated backdrop for rooms without a stream URL, so the overlay
// has something moving under it. Drawn on a canvas; stops when hidden.

export function startBackdrop(canvas) {
  const context = canvas.getContext("2d");
  if (!context) return;
  const draw = (now) => {
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    const t = now / 1000, gradient = context.createLinearGradient(0, 0, width, height);
    gradient.addColorStop(0, `hsl(${(t * 8) % 360} 45% 18%)`);
    gradient.addColorStop(1, `hsl(${(t * 8 + 120) % 360} 45% 10%)`);
    context.fillStyle = gradient;
    context.fillRect(0, 0, width, height);
    for (let i = 0; i < 6; i++) {
      const x = width * (0.5 + 0.4 * Math.sin(t * 0.3 + i * 1.7));
      const y = height * (0.5 + 0.35 * Math.cos(t * 0.23 + i * 2.3));
      context.beginPath();
      context.fillStyle = `hsl(${(i * 60 + t * 10) % 360} 60% 50% / 0.12)`;
      context.arc(x, y, Math.min(width, height) * (0.12 + 0.04 * i), 0, 2 * Math.PI);
      context.fill();
    }
    requestAnimationFrame(draw);
  };
  requestAnimationFrame(draw);
}
