// Copy buttons, on the tokens and budget pages: a button with data-copy="ID" copies the text
// of element ID to the clipboard, and says so in the page's [data-copy-status].
"use strict";

(function () {
  const status = document.querySelector("[data-copy-status]");
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        status.textContent = "Copied.";
      } catch (error) {
        // No clipboard access (an insecure origin, or a denied permission): select the text
        // so that Ctrl+C or the context menu copies it.
        window.getSelection().selectAllChildren(source);
        status.textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy.";
      }
    });
  });
})();
