-- wrk script: each connection waits 7 ms between requests, so 8 connections offer about
-- 1 000 requests/s (less the response time) instead of saturating the server.
function delay()
  return 7
end
