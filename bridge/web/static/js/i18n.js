/* The page's words: every interface text comes from static/i18n/<language>.json.
 *
 * A node that shows interface text carries data-i18n="key" (and data-i18n-params as JSON, and
 * data-i18n-fallback for text from the server when there is no translation), so changing the
 * language re-translates the whole page, including what the conversation has already shown.
 */

export const LANGUAGES = { en: "English", es: "Español", ar: "العربية" };
const RTL = new Set(["ar"]);
const PICKED_KEY = "precinct.language";     // sessionStorage: this tab only

let language = "en";
let words = {};
let english = {};
const listeners = [];

function fetchWords(code) {
  return fetch("/static/i18n/" + code + ".json", { credentials: "omit" }).then(function (r) {
    if (!r.ok) { throw new Error("no translation " + code); }
    return r.json();
  });
}

/** The first of the browser's preferred languages we have (es-MX → es), else English. */
export function preferredLanguage() {
  let asked = null;
  try { asked = new URLSearchParams(window.location.search).get("lang"); } catch (e) { asked = null; }
  let picked = null;
  try { picked = window.sessionStorage.getItem(PICKED_KEY); } catch (e) { picked = null; }
  const wanted = [asked, picked].concat(Array.from(navigator.languages || [navigator.language || ""]));
  for (const tag of wanted) {
    const base = String(tag || "").toLowerCase().split("-")[0];
    if (Object.prototype.hasOwnProperty.call(LANGUAGES, base)) { return base; }
  }
  return "en";
}

export function currentLanguage() { return language; }

/** The text for key in the current language, with {name} placeholders filled in. */
export function t(key, params, fallback) {
  params = params || {};
  let entry = Object.prototype.hasOwnProperty.call(words, key) ? words[key] : english[key];
  if (entry === undefined) { return fallback !== undefined ? fallback : key; }
  if (typeof entry === "object" && entry !== null) {
    // Plural forms by CLDR category (Arabic has six): {"one": …, "other": …}.
    const rule = new Intl.PluralRules(language).select(Number(params.count));
    entry = entry[rule] !== undefined ? entry[rule] : entry.other;
  }
  return String(entry).replace(/\{(\w+)\}/g, function (whole, name) {
    return Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole;
  });
}

/** Show key's text in node, and remember the key so a language change re-translates it. */
export function setText(node, key, params, fallback) {
  if (!key) {
    delete node.dataset.i18n;
    node.textContent = "";
    return;
  }
  node.dataset.i18n = key;
  if (params) { node.dataset.i18nParams = JSON.stringify(params); } else { delete node.dataset.i18nParams; }
  if (fallback !== undefined) { node.dataset.i18nFallback = fallback; } else { delete node.dataset.i18nFallback; }
  translateNode(node);
}

function translateNode(node) {
  let params = {};
  try { params = node.dataset.i18nParams ? JSON.parse(node.dataset.i18nParams) : {}; } catch (e) { params = {}; }
  node.textContent = t(node.dataset.i18n, params, node.dataset.i18nFallback);
}

function translatePage() {
  document.querySelectorAll("[data-i18n]").forEach(translateNode);
  document.querySelectorAll("[data-i18n-aria-label]").forEach(function (node) {
    node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
  });
  document.documentElement.lang = language;
  document.documentElement.dir = RTL.has(language) ? "rtl" : "ltr";
}

export function onLanguageChange(listener) { listeners.push(listener); }

export function setLanguage(code, remember) {
  if (!Object.prototype.hasOwnProperty.call(LANGUAGES, code)) { code = "en"; }
  return (code === "en" ? Promise.resolve(english) : fetchWords(code)).then(function (loaded) {
    language = code;
    words = loaded;
    if (remember) {
      try { window.sessionStorage.setItem(PICKED_KEY, code); } catch (e) { /* not remembered */ }
    }
    translatePage();
    listeners.forEach(function (listener) { listener(code); });
  }).catch(function () { /* keep the language we have */ });
}

/** Load English (the fallback for any missing key), then the citizen's language; fill the selector. */
export function initLanguage(select) {
  Object.keys(LANGUAGES).forEach(function (code) {
    const option = document.createElement("option");
    option.value = code;
    option.lang = code;
    option.textContent = LANGUAGES[code];
    select.appendChild(option);
  });
  select.addEventListener("change", function () { setLanguage(select.value, true); });
  onLanguageChange(function (code) { select.value = code; });
  return fetchWords("en").then(function (loaded) { english = loaded; words = loaded; })
    .catch(function () { /* the page's own English stays */ })
    .then(function () { return setLanguage(preferredLanguage(), false); });
}
