// A plug page stays live: each change of the plug arrives over server-sent events and is shown
// without a reload; a dropped stream reconnects by itself. Buttons post through fetch (the
// forms still work without script).
(() => {
  const root = document.getElementById("plug");
  if (!root) return;
  const plugId = root.dataset.plugId;
  const $ = (id) => document.getElementById(id);
  const live = $("live");
  let failedAt = 0;

  function button(prompt) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = `/plug/${encodeURIComponent(plugId)}`;
    const csrf = document.createElement("input");
    csrf.type = "hidden";
    csrf.name = "csrf_token";
    csrf.value = root.dataset.csrf;
    const choice = document.createElement("input");
    choice.type = "hidden";
    choice.name = "prompt";
    choice.value = prompt;
    const submit = document.createElement("button");
    submit.type = "submit";
    submit.textContent = prompt;
    form.append(csrf, choice, submit);
    return form;
  }

  function show(plug) {
    $("words").textContent = plug.words;
    $("figures").hidden = !plug.mine;
    $("kw").textContent = plug.kw;
    $("kwh").textContent = plug.kwh;
    $("cost").textContent = plug.cost;
    $("elapsed").textContent = plug.elapsed;
    $("top-up").hidden = !plug.top_up_needed;
    const controls = $("controls");
    const now = [...controls.querySelectorAll("input[name=prompt]")].map((i) => i.value);
    if (now.join("|") !== plug.prompts.join("|")) {
      controls.replaceChildren(...plug.prompts.map(button));
    }
  }

  function problem(message) {
    let box = document.querySelector("main .error");
    if (!box) {
      box = document.createElement("p");
      box.className = "error";
      box.setAttribute("role", "alert");
      root.prepend(box);
    }
    box.textContent = message;
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!root.contains(form) || !form.querySelector("input[name=prompt]")) return;
    event.preventDefault();
    const submit = form.querySelector("button");
    submit.disabled = true;
    try {
      const prompt = form.querySelector("input[name=prompt]").value;
      const url = `/api/v1/plugs/${encodeURIComponent(plugId)}/prompts`;
      show(await window.evplug.api("POST", url, { prompt }));
      const box = document.querySelector("main .error");
      if (box) box.remove();
    } catch (error) {
      problem(error.message);
    } finally {
      submit.disabled = false;
    }
  });

  function connect() {
    const events = new EventSource(`/api/v1/plugs/${encodeURIComponent(plugId)}/events`);
    events.addEventListener("plug", (event) => {
      live.textContent = "";
      show(JSON.parse(event.data));
    });
    events.addEventListener("error", () => {
      live.textContent = "Reconnecting…";
      if (events.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. the server answered an error): try again, gently.
        const wait = Date.now() - failedAt < 10000 ? 10000 : 2000;
        failedAt = Date.now();
        setTimeout(connect, wait);
      }
    });
  }
  connect();
})();
