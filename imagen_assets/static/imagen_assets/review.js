/* The review screen's keyboard (imagen_assets.admin.review_screen).

   Progressive enhancement: every action is a plain form that works without this file.
   j / → next image, k / ← previous, a approve, r reject (type the reason, Enter),
   c comment (type it, Enter), p keep this one and reject the others, ? help, Esc back. */
(function () {
    "use strict";

    var root = document.querySelector("[data-imagen-review]");
    if (!root) {
        return;
    }
    var variants = Array.prototype.slice.call(root.querySelectorAll("[data-imagen-variant]"));
    var help = document.getElementById("imagen-shortcuts");
    var helpToggle = root.querySelector("[data-imagen-help-toggle]");
    var current = -1;

    function select(index, scroll) {
        if (!variants.length) {
            return;
        }
        current = Math.max(0, Math.min(variants.length - 1, index));
        variants.forEach(function (variant, i) {
            variant.classList.toggle("imagen-current", i === current);
        });
        variants[current].focus({ preventScroll: !scroll });
        if (scroll) {
            variants[current].scrollIntoView({ block: "nearest", behavior: "smooth" });
        }
    }

    function variantOf(element) {
        return element.closest ? element.closest("[data-imagen-variant]") : null;
    }

    function showError(variant, message) {
        var error = variant.querySelector("[data-imagen-error]");
        if (error) {
            error.textContent = message;
            error.hidden = !message;
        }
    }

    // r and c: the card's text field becomes the reason, or the comment, and Enter sends it.
    function startTyping(variant, mode) {
        var note = variant.querySelector("[data-imagen-note]");
        if (!note) {
            return;
        }
        note.dataset.imagenMode = mode;
        note.placeholder = root.dataset[mode === "reject" ? "reasonPlaceholder" : "commentPlaceholder"] || "";
        note.focus();
    }

    function press(variant, selector) {
        var button = variant.querySelector(selector);
        if (button) {
            button.click();
        }
    }

    function toggleHelp(show) {
        if (!help) {
            return;
        }
        help.hidden = show === undefined ? !help.hidden : !show;
        if (helpToggle) {
            helpToggle.setAttribute("aria-expanded", String(!help.hidden));
        }
    }

    if (helpToggle) {
        helpToggle.hidden = false;
        helpToggle.addEventListener("click", function () { toggleHelp(); });
    }

    // A rejection needs its reason: ask for it here rather than after a round trip.
    root.addEventListener("click", function (event) {
        var button = event.target.closest && event.target.closest("[data-imagen-reject]");
        if (!button) {
            return;
        }
        var variant = variantOf(button);
        var note = variant.querySelector("[data-imagen-note]");
        if (note && !note.value.trim()) {
            event.preventDefault();
            showError(variant, root.dataset.reasonRequired || "");
            startTyping(variant, "reject");
        }
    });

    variants.forEach(function (variant, index) {
        variant.addEventListener("focusin", function () {
            current = index;
            variants.forEach(function (other, i) {
                other.classList.toggle("imagen-current", i === index);
            });
        });
    });

    document.addEventListener("keydown", function (event) {
        if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) {
            return;
        }
        var target = event.target;
        var typing = target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" || target.tagName === "SELECT");
        if (typing) {
            var variant = variantOf(target);
            if (event.key === "Escape" && variant) {
                event.preventDefault();
                delete target.dataset.imagenMode;
                target.placeholder = "";
                showError(variant, "");
                variant.focus();
            } else if (event.key === "Enter" && !event.shiftKey && variant && target.dataset.imagenMode) {
                // Enter sends the reason or the comment; Shift+Enter is a new line.
                event.preventDefault();
                press(variant, target.dataset.imagenMode === "reject" ? "[data-imagen-reject]" : "[data-imagen-comment]");
            }
            return;
        }
        var here = current >= 0 ? variants[current] : null;
        switch (event.key) {
        case "j":
        case "ArrowRight":
            select(current + 1, true);
            break;
        case "k":
        case "ArrowLeft":
            select(current - 1, true);
            break;
        case "a":
            if (here) { press(here, "[data-imagen-approve]"); }
            break;
        case "r":
            if (here) { startTyping(here, "reject"); }
            break;
        case "c":
            if (here) { startTyping(here, "comment"); }
            break;
        case "p":
            if (here) { press(here, "[data-imagen-keep]"); }
            break;
        case "?":
            toggleHelp();
            break;
        case "Escape":
            toggleHelp(false);
            break;
        default:
            return;
        }
        event.preventDefault();
    });

    // Back from a decision: start on the request the page returned to, else the first image.
    // After "load": the browser's own scroll to the #fragment would otherwise take the focus.
    function start() {
        var index = 0;
        if (location.hash) {
            var section = document.getElementById(location.hash.slice(1));
            var first = section && section.querySelector("[data-imagen-variant]");
            if (first) {
                index = variants.indexOf(first);
            }
        }
        if (document.activeElement === document.body || !document.activeElement) {
            select(index, false);
        }
    }
    if (document.readyState === "complete") {
        start();
    } else {
        window.addEventListener("load", function () { window.setTimeout(start, 0); });
    }
}());
