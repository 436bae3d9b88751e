// gload: a small HTTPS load client with client certificates (Go 1.19 stdlib only).
//
// A small Go load generator for keep and nginx over mTLS, with:
// -expect (every response must be 200 AND its body must contain this string), -timeout (a
// per-request limit, so a stuck request cannot stall a run), machine-readable output
// (latencies in ms), and the first error printed to stderr.
//
//	gload -url URL -ca CA -cert CRT -key KEY -c CONC -d DURATION [-new] [-h2] [-expect STR]
//
// -new opens a fresh TCP+TLS connection for every request (full handshake; the client keeps no
// session cache, so there is no resumption). Without it each worker reuses one keep-alive
// connection. Output, one line on stdout:
//
//	requests=N errors=E secs=S rps=R p50_ms=X p99_ms=Y max_ms=Z
//
// where requests counts only responses that passed the checks. Exit status 0, or 2 on bad flags.
//
// Build (offline): printf 'module gload\n\ngo 1.19\n' > go.mod && GOPROXY=off go build -o gload .
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to GET")
	ca := flag.String("ca", "", "CA certificate (PEM) that signs the server certificate")
	crt := flag.String("cert", "", "client certificate (PEM)")
	key := flag.String("key", "", "client private key (PEM, unencrypted)")
	conc := flag.Int("c", 8, "concurrent workers (one connection each)")
	dur := flag.Duration("d", 10*time.Second, "run duration")
	newConn := flag.Bool("new", false, "new TLS connection per request")
	h2 := flag.Bool("h2", false, "allow HTTP/2")
	expect := flag.String("expect", "", "the response body must contain this string")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request time limit")
	flag.Parse()
	if *url == "" || *ca == "" || *crt == "" || *key == "" || *conc < 1 {
		fmt.Fprintln(os.Stderr, "usage: gload -url URL -ca CA -cert CRT -key KEY [-c N] [-d DUR] [-new] [-h2] [-expect STR]")
		os.Exit(2)
	}
	pair, err := tls.LoadX509KeyPair(*crt, *key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pem, err := os.ReadFile(*ca)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fmt.Fprintln(os.Stderr, "no certificate in", *ca)
		os.Exit(2)
	}
	want := []byte(*expect)
	deadline := time.Now().Add(*dur)
	var mu sync.Mutex
	var lats []time.Duration
	errs := 0
	var firstErr string
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool}
			tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: *newConn, MaxIdleConnsPerHost: 1, ForceAttemptHTTP2: *h2}
			if !*h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: *timeout}
			local := make([]time.Duration, 0, 100000)
			le := 0
			lerr := ""
			fail := func(msg string) {
				le++
				if lerr == "" {
					lerr = msg
				}
			}
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := cl.Get(*url)
				if err != nil {
					fail(err.Error())
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					fail("reading the body: " + err.Error())
					continue
				}
				if resp.StatusCode != 200 {
					fail(fmt.Sprintf("status %d: %.200s", resp.StatusCode, body))
					continue
				}
				if len(want) > 0 && !bytes.Contains(body, want) {
					fail(fmt.Sprintf("body lacks %q: %.200s", *expect, body))
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, local...)
			errs += le
			if firstErr == "" {
				firstErr = lerr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	p := func(q float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return float64(lats[int(q*float64(len(lats)-1))].Microseconds()) / 1000
	}
	if firstErr != "" {
		fmt.Fprintln(os.Stderr, "first error:", firstErr)
	}
	fmt.Printf("requests=%d errors=%d secs=%.2f rps=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		len(lats), errs, el, float64(len(lats))/el, p(0.5), p(0.99), p(1))
}
