/* imagen_assets admin: live price and final prompt on the generate page, self-refresh while
   images are open (the lists and an image's page reload; a campaign's page refreshes its
   summary only). */
"use strict";
(function () {
    // -- "$1.20" for totals, "4.25¢" for a price per image in fractions of a cent: mirrors
    // the imagen_admin money and unit_price filters; amounts are in ten-thousandths of a
    // dollar, rounded half up to the cent as the server does. -------------------------------
    function money(tenThousandths) {
        if (tenThousandths > 0 && tenThousandths < 50) {
            return "<$0.01";
        }
        const cents = Math.floor((tenThousandths + 50) / 100);
        const whole = Math.floor(cents / 100);
        const fraction = String(cents % 100).padStart(2, "0");
        return "$" + whole.toLocaleString("en-US") + "." + fraction;
    }

    function unitPrice(tenThousandths) {
        if (tenThousandths % 100 === 0) {
            return money(tenThousandths);
        }
        return String(tenThousandths / 100) + "\u00a2";
    }

    function setText(root, selector, text) {
        root.querySelectorAll(selector).forEach(function (el) { el.textContent = text; });
    }

    function initGenerate(form) {
        const campaigns = parseInt(form.dataset.campaigns || "1", 10);
        const count = form.querySelector("input[name=count]");
        const provider = form.querySelector("select[name=provider]");
        const negative = form.querySelector("textarea[name=negative_prompt]");
        const max = count ? parseInt(count.getAttribute("max") || "0", 10) : 0;

        function update() {
            const option = provider && provider.selectedOptions[0];
            if (!option || !count) {
                return;
            }
            const price = Math.round(parseFloat(option.dataset.price || "0") * 10000);
            const n = parseInt(count.value, 10);
            const valid = Number.isInteger(n) && n >= 1 && (!max || n <= max);
            const perCampaign = valid ? price * n : null;
            setText(form, "[data-imagen-provider-name]", option.dataset.name || option.text);
            setText(form, "[data-imagen-price]", unitPrice(price));
            setText(form, "[data-imagen-count]", valid ? String(n) : "—");
            setText(form, "[data-imagen-per-campaign]", valid ? money(perCampaign) : "—");
            setText(form, "[data-imagen-total]", valid ? money(perCampaign * campaigns) : "—");
            // The server's rule (services.Spend.allows, which also says why counting in
            // ten-thousandths matches it): refused when the estimate is more than is left,
            // or whatever it is once the campaign is already over its budget.
            form.querySelectorAll("tr[data-left]").forEach(function (row) {
                const left = row.dataset.left;
                const over = valid && left !== "" && (
                    row.hasAttribute("data-overspent") ||
                    perCampaign > Math.round(parseFloat(left) * 10000)
                );
                row.classList.toggle("imagen-over-budget", over);
            });
            const sizes = JSON.parse(option.dataset.sizes || "{}");
            form.querySelectorAll(".imagen-ratio-label[data-ratio]").forEach(function (label) {
                const ratio = label.dataset.ratio;
                label.textContent = sizes[ratio] ? ratio + " · " + sizes[ratio] : ratio;
            });
            // Warn before submitting, unless the server already put the error on the field.
            const note = form.querySelector("[data-imagen-negative-note]");
            if (note) {
                const typed = negative && negative.value.trim() !== "";
                const shown = form.querySelector(".field-negative_prompt.errors");
                note.hidden = option.dataset.negative !== "0" || !typed || !!shown;
            }
        }

        initPreview(form);
        if (count) {
            count.addEventListener("input", update);
        }
        if (provider) {
            provider.addEventListener("change", update);
        }
        if (negative) {
            negative.addEventListener("input", update);
        }
        update();
    }

    // -- the final prompt, as the server composes it (prompts.compose_prompt) -----------------
    // The page never composes a prompt itself: it asks the server, which answers with
    // exactly what Generate would send (or why it would be refused).
    const PREVIEW_DELAY_MS = 250;

    function initPreview(form) {
        const box = form.querySelector("[data-imagen-preview-url]");
        if (!box) {
            return;
        }
        const url = box.dataset.imagenPreviewUrl;
        const campaigns = (box.dataset.imagenFinalCampaigns || "").trim().split(/\s+/);
        const template = form.querySelector("select[name=template]");
        let timer = null;
        let sent = 0;

        function showPlaceholders() {
            const chosen = template ? template.value : "";
            form.querySelectorAll("[data-imagen-placeholder-for]").forEach(function (row) {
                const ids = row.dataset.imagenPlaceholderFor.split(" ");
                row.hidden = !chosen || ids.indexOf(chosen) < 0;
            });
        }

        function render(previews) {
            previews.forEach(function (preview) {
                const block = box.querySelector("[data-imagen-preview='" + preview.campaign + "']");
                if (!block) {
                    return;
                }
                const text = block.querySelector("[data-imagen-final-text]");
                const error = block.querySelector("[data-imagen-final-error]");
                text.textContent = preview.prompt || "";
                text.hidden = preview.prompt === null;
                error.textContent = preview.error || "";
                error.hidden = preview.error === null;
                error.classList.remove("imagen-quiet");
            });
            box.dataset.imagenPreviewFresh = "1";
        }

        function refresh() {
            const data = new FormData(form);
            campaigns.forEach(function (id) { data.append("preview_campaign", id); });
            const mine = ++sent;
            fetch(url, { method: "POST", body: data, credentials: "same-origin" })
                .then(function (response) { return response.ok ? response.json() : null; })
                .then(function (body) {
                    // Only the newest answer counts: an older, slower one must not win.
                    if (body && mine === sent) {
                        render(body.previews);
                    }
                })
                .catch(function () { /* offline: the preview stays as it was */ });
        }

        function later() {
            delete box.dataset.imagenPreviewFresh;
            window.clearTimeout(timer);
            timer = window.setTimeout(refresh, PREVIEW_DELAY_MS);
        }

        form.querySelectorAll(
            "textarea[name=prompt], select[name=template], select[name=style], " +
            "input[name^=placeholder__]"
        ).forEach(function (field) {
            field.addEventListener(field.tagName === "SELECT" ? "change" : "input", later);
        });
        if (template) {
            template.addEventListener("change", showPlaceholders);
            showPlaceholders();
        }
        if (form.querySelector("textarea[name=prompt]").value.trim() || (template && template.value)) {
            refresh();
        }
    }

    // -- reload while images are queued or generating, unless the user is busy ---------------
    const REFRESH_MS = 3000;

    function userIsBusy() {
        if (document.querySelector("#result_list input.action-select:checked, #action-toggle:checked")) {
            return true;
        }
        const action = document.querySelector("#changelist-form select[name=action]");
        if (action && action.value) {
            return true;
        }
        const active = document.activeElement;
        if (active && active.matches("input, textarea, select, [contenteditable]")) {
            return true;
        }
        return document.hidden;
    }

    function initRefresh() {
        // Only on pages that are safe to reload (the images list, an image's own page):
        // never on a form the user may be filling in, such as a campaign's change page.
        const reloadable = document.body.classList.contains("change-list") ||
            document.querySelector("[data-imagen-autorefresh]");
        if (!reloadable || !document.querySelector("[data-imagen-open]")) {
            return;
        }
        window.setInterval(function () {
            if (!userIsBusy()) {
                window.location.reload();
            }
        }, REFRESH_MS);
    }

    // -- a campaign's summary: refreshed in place while something is in progress ----------
    // Only the summary fragment is fetched again (counts, in progress, committed spend,
    // the newest requests); the form around it, which the user may be editing, is left alone.
    function initSummary(box) {
        const url = box.dataset.imagenSummaryUrl;
        function inProgress() {
            return !!box.querySelector("[data-imagen-summary-open]");
        }
        if (!url || !inProgress()) {
            return;
        }
        let busy = false;
        const timer = window.setInterval(function () {
            if (busy || document.hidden || box.contains(document.activeElement)) {
                return;
            }
            busy = true;
            window.fetch(url, {credentials: "same-origin", cache: "no-store"})
                .then(function (response) {
                    if (!response.ok || response.redirected) {
                        throw new Error("summary " + response.status);
                    }
                    return response.text();
                })
                .then(function (html) {
                    box.innerHTML = html;
                    if (!inProgress()) {
                        window.clearInterval(timer);
                    }
                })
                .catch(function () {
                    // Logged out or gone: stop asking; the page still shows the last figures.
                    window.clearInterval(timer);
                })
                .finally(function () {
                    busy = false;
                });
        }, REFRESH_MS);
    }

    // -- a "Copy" button beside JSON blocks (shown only where the clipboard works) ----------
    function initCopy(button) {
        const pre = button.parentElement.querySelector("pre");
        if (!pre || !navigator.clipboard) {
            return;
        }
        button.hidden = false;
        const label = button.textContent;
        button.addEventListener("click", function () {
            navigator.clipboard.writeText(pre.textContent).then(function () {
                button.textContent = button.dataset.copied || label;
                window.setTimeout(function () { button.textContent = label; }, 1500);
            });
        });
    }

    function init() {
        document.querySelectorAll("form[data-imagen-generate]").forEach(initGenerate);
        document.querySelectorAll("[data-imagen-summary-url]").forEach(initSummary);
        document.querySelectorAll("[data-imagen-copy]").forEach(initCopy);
        initRefresh();
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", init);
    } else {
        init();
    }
})();
