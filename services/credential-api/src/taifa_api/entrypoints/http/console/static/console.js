// Taifa Mail console: small progressive enhancement. Every page works without it.
"use strict";

(function () {
  function cookie(name) {
    var prefix = name + "=";
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      if (parts[i].indexOf(prefix) === 0) return decodeURIComponent(parts[i].slice(prefix.length));
    }
    return "";
  }

  function announce(button, text) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = text;
    window.setTimeout(function () { button.textContent = original; }, 2000);
  }

  function copyFrom(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.value !== undefined && source.tagName === "INPUT" ? source.value : source.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { announce(button, "Copied"); },
        function () { announce(button, "Select and copy"); }
      );
      return;
    }
    if (source.select) source.select();
    announce(button, "Select and copy");
  }

  // Buttons to copy: hidden without script (the text is there to select by hand).
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { copyFrom(button); });
  });

  // Typed confirmation: the button is enabled only once the name matches (the server checks it too).
  document.querySelectorAll("input[data-confirm]").forEach(function (input) {
    var button = document.getElementById(input.getAttribute("data-confirm-button"));
    if (!button) return;
    var expected = input.getAttribute("data-confirm").toLowerCase();
    function update() { button.disabled = input.value.trim().toLowerCase() !== expected; }
    input.addEventListener("input", update);
    update();
  });

  // CSRF double submit: every form sends the current taifa_csrf cookie (it may have been renewed in another tab).
  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function () {
      var field = form.querySelector("input[name=csrf_token]");
      var current = cookie("taifa_csrf");
      if (field && current) field.value = current;
    });
  });

  // The password dialog becomes modal (focus stays in it); Escape leaves through the same door as the close link,
  // which tells the reader that the password cannot be shown again.
  var dialog = document.querySelector("dialog[data-modal]");
  if (dialog && typeof dialog.showModal === "function") {
    var closeLink = document.getElementById("close-password");
    dialog.close();
    dialog.showModal();
    dialog.addEventListener("cancel", function (event) {
      event.preventDefault();
      if (closeLink) closeLink.click();
    });
    var secret = document.getElementById("password");
    if (secret) secret.focus();
  }
})();
