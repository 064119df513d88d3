// "Claim all idle": the consumer the entries come from is never offered as where they go.
// Without JavaScript the page leaves out the consumer of its filter, and the server refuses
// a claim to the source; this keeps the lists right when the "from" choice changes.
(() => {
  if (window.claimFormsWatched) return;  // htmx re-runs this script when the screen refreshes
  window.claimFormsWatched = true;
  const sync = (form) => {
    const source = form.querySelector("select[name=from]");
    const target = form.querySelector("select[name=to_token]");
    if (!source || !target) return;
    for (const option of target.options) {
      option.hidden = option.disabled = option.value !== "" && option.value === source.value;
    }
    if (target.selectedOptions[0]?.disabled) {
      const usable = [...target.options].find((option) => !option.disabled);
      if (usable) target.value = usable.value;
    }
  };
  document.addEventListener("change", (event) => {
    const form = event.target.closest("form[aria-label='Claim all idle entries']");
    if (form && event.target.name === "from") sync(form);
  });
})();
