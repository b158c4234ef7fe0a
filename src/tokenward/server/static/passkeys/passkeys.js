// Passkey ceremonies for the sign-in and account pages. A form with data-passkey="get" or
// "create" runs navigator.credentials.get/create with the options the server put in the page
// (#passkey-options, WebAuthn JSON), puts the browser's answer in its "credential" field as
// JSON, and submits. Served from this origin: the pages' CSP allows no inline script.
"use strict";

function passkeyOptions() {
  return JSON.parse(document.getElementById("passkey-options").textContent);
}

async function runCeremony(form) {
  const options = passkeyOptions();
  let credential;
  if (form.dataset.passkey === "create") {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
    credential = await navigator.credentials.create({ publicKey });
  } else {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
    credential = await navigator.credentials.get({ publicKey });
  }
  form.elements.credential.value = JSON.stringify(credential.toJSON());
  form.submit();
}

for (const form of document.querySelectorAll("form[data-passkey]")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const status = document.getElementById("passkey-status");
    runCeremony(form).catch((error) => {
      if (status) status.textContent = "The passkey was not used: " + error.name;
    });
  });
}
