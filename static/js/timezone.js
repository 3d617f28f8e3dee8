// Pre-fill the time zone of a blank sign-up form from the browser (the server marks it with
// data-detect="browser"; newsletter.forms.SubscribeForm). Never on the manage page: there the
// select shows the zone the subscriber chose.
(function () {
  var select = document.getElementById("id_timezone");
  if (!select || select.dataset.detect !== "browser") return;
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone || select.value !== "UTC") return;
  for (var i = 0; i < select.options.length; i++) {
    if (select.options[i].value === zone) { select.value = zone; break; }
  }
})();
// Show the weekday only for weekly digests.
(function () {
  var frequency = document.getElementById("id_frequency");
  var weekday = document.getElementById("weekday-row");
  if (!frequency || !weekday) return;
  function sync() { weekday.hidden = frequency.value !== "weekly"; }
  frequency.addEventListener("change", sync);
  sync();
})();
