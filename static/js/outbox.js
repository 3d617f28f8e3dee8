// Local outbox (DEBUG only): size the frame holding an email's HTML to that HTML, so a long digest
// reads as one page and a short confirmation leaves no blank. The frame is sandboxed without
// scripts; "allow-same-origin" only lets this page measure it.
(function () {
  var frame = document.querySelector("iframe.email");
  if (!frame) return;
  function fit() {
    var doc = frame.contentDocument;
    if (!doc || !doc.documentElement) return;
    frame.style.height = "0px"; // measure the content, not the current frame
    frame.style.height = doc.documentElement.scrollHeight + "px";
  }
  frame.addEventListener("load", fit);
  window.addEventListener("resize", fit);
  if (frame.contentDocument && frame.contentDocument.readyState === "complete") fit();
})();
