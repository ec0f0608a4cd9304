// Command bareserver is the baseline of scripts/bench-hit.sh: a bare net/http server
// that answers every request with the same 244-byte body calcserver sends for the key
// "testing", and nothing else — no routing, no cache, no metrics, no log. calcserver's
// hit path is measured against it in the same run.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/unicorn-rentals/unicorn/internal/calc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "listen address")
	flag.Parse()
	body := calc.Body(calc.Token, 1, []byte("testing"))
	srv := &http.Server{
		Addr:              *addr,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write(body)
		}),
	}
	log.Fatal(srv.ListenAndServe())
}
