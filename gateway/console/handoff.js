// The end of a console login: the callback's page carries the login token; keep it in this
// tab's sessionStorage (gone when the tab closes) and open the console. The token never
// goes in a URL.
'use strict';
(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? '';
  const seconds = Number(meta('surge-expires-in')) || 0;
  sessionStorage.setItem('surge.console', JSON.stringify({
    token: meta('surge-token'),
    account: meta('surge-account'),
    expires_at: seconds > 0 ? Date.now() + seconds * 1000 : null,
  }));
  location.replace('/console');
})();
