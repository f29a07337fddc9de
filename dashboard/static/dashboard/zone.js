// The browser's time zone, for the server to show times in it (parroter.middleware). IANA
// names ("Europe/Berlin", "Etc/GMT+5") are all characters a cookie value may hold as they are.
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zone && !document.cookie.split("; ").includes(`tz=${zone}`)) {
    document.cookie = `tz=${zone}; path=/; max-age=31536000; samesite=lax`;
  }
})();
