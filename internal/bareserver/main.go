// Command bareserver is the baseline of scripts/bench-hit.sh: a bare net/http server
// that answers every request with the same 244-byte body calcserver sends for the key
// "testing", and nothing else — no routing, no cache, no metrics, no log. calcserver's
// hit path is measured against it in the same run. With -contract-headers it also
// sends the headers calcserver's contract adds to a 200 (X-Cache, X-Served-By,
// Cache-Control, ETag), which shows what net/http charges for them alone.
package main

import (
	"encoding/hex"
	"flag"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "listen address")
	contract := flag.Bool("contract-headers", false, "also send calcserver's X-Cache, X-Served-By, Cache-Control and ETag")
	flag.Parse()
	key := []byte("testing")
	body := calc.Body(calc.Token, 1, key)
	res := calc.Sum(1, key)
	host, _ := os.Hostname()
	extra := map[string][]string{
		"X-Cache":       {"HIT"},
		"X-Served-By":   {host},
		"Cache-Control": {"public, max-age=86400"},
		"Etag":          {`"` + hex.EncodeToString(res[:]) + `"`},
	}
	srv := &http.Server{
		Addr:              *addr,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"text/plain; charset=utf-8"}
			if *contract {
				for k, v := range extra {
					h[k] = v
				}
			}
			_, _ = w.Write(body)
		}),
	}
	log.Fatal(srv.ListenAndServe())
}
