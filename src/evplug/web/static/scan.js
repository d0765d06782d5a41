// Scan a socket's QR code with the camera where the browser has BarcodeDetector; the typed code
// works everywhere.
(() => {
  if (!("BarcodeDetector" in window) || !navigator.mediaDevices) return;
  const section = document.getElementById("scan");
  const video = document.getElementById("scan-video");
  const status = document.getElementById("scan-status");
  section.hidden = false;
  document.getElementById("scan-start").addEventListener("click", async () => {
    let stream;
    try {
      const detector = new BarcodeDetector({ formats: ["qr_code"] });
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      video.srcObject = stream;
      video.hidden = false;
      await video.play();
      status.textContent = "Point the camera at the code on the socket.";
      for (;;) {
        const [code] = await detector.detect(video);
        if (code) {
          status.textContent = "Found it: opening the socket…";
          window.location.href = `/plugs?code=${encodeURIComponent(code.rawValue)}`;
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    } catch (error) {
      status.textContent = `The camera did not work (${error.message}): type the code instead.`;
    } finally {
      if (stream && video.hidden) stream.getTracks().forEach((t) => t.stop());
    }
  });
})();
