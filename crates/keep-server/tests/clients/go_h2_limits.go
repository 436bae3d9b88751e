// A Go client (stdlib net/http only, as the `vault` CLI and Terraform use it) against a real
// keep server: HTTP/2 is negotiated over TLS with a client certificate, and every limit keep
// enforces reaches the client as a status and Vault's {"errors":[...]} body, never as a reset
// stream.
//
// Run by crates/keep/tests/go_client.rs:
//
//	go run go_h2_limits.go -url https://localhost:PORT -ca root.pem -cert admin.pem -key admin.key -limit 131072
//
// Exits 0 when every case passed, 1 (naming the case) otherwise.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

type check struct {
	name   string
	method string
	path   string
	// body returns a fresh request body and its length (-1: unknown, sent without
	// Content-Length).
	body   func() (io.Reader, int64)
	status int
	// want is a substring of one of the errors.
	want string
}

func main() {
	url := flag.String("url", "", "https://host:port of the keep server")
	ca := flag.String("ca", "", "CA bundle (PEM) that issued the server certificate")
	certFile := flag.String("cert", "", "client certificate (PEM)")
	keyFile := flag.String("key", "", "client key (PEM)")
	limit := flag.Int("limit", 0, "listener.limits.max_request_bytes of the server")
	flag.Parse()
	if *url == "" || *ca == "" || *certFile == "" || *keyFile == "" || *limit <= 0 {
		fail("usage: -url -ca -cert -key -limit are all required")
	}

	roots := x509.NewCertPool()
	pem, err := os.ReadFile(*ca)
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		fail(fmt.Sprintf("cannot load the CA bundle %s: %v", *ca, err))
	}
	pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		fail(fmt.Sprintf("cannot load the client certificate: %v", err))
	}
	client := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{
				RootCAs:      roots,
				Certificates: []tls.Certificate{pair},
			},
			// With a custom TLS config, net/http negotiates h2 only when asked to (the
			// vault CLI does the same through golang.org/x/net/http2.ConfigureTransport).
			ForceAttemptHTTP2: true,
		},
	}

	payload := func(over int) []byte {
		return []byte(`{"data":{"k":"` + strings.Repeat("x", over) + `"}}`)
	}
	var checks []check
	// Just over the limit, past HTTP/2's initial flow-control windows, and far past them (the
	// client is still sending when the answer comes).
	for _, over := range []int{*limit + 4096, 4 * *limit, 32 << 20} {
		over := over
		checks = append(checks,
			check{
				name: fmt.Sprintf("%d-byte body with Content-Length", over), method: "PUT",
				path: "/v1/secret/data/go-big",
				body: func() (io.Reader, int64) {
					p := payload(over)
					return bytes.NewReader(p), int64(len(p))
				},
				status: 413, want: fmt.Sprintf("the limit is %d bytes", *limit),
			},
			check{
				name: fmt.Sprintf("%d-byte body streamed without Content-Length", over), method: "PUT",
				path: "/v1/secret/data/go-big",
				body: func() (io.Reader, int64) {
					// Not a *bytes.Reader: net/http cannot know the length.
					return io.MultiReader(bytes.NewReader(payload(over))), -1
				},
				status: 413, want: fmt.Sprintf("request body too large: the limit is %d bytes", *limit),
			})
	}
	checks = append(checks, []check{
		{
			name: "path over the path limit", method: "GET",
			path:   "/v1/secret/data/" + strings.Repeat("p", 800),
			status: 400, want: "request path too long",
		},
		{
			name: "a route that does not take the verb", method: "DELETE",
			path:   "/v1/sys/health",
			status: 405, want: "unsupported operation",
		},
	}...)

	failed := 0
	for _, c := range checks {
		if msg := run(client, *url, c); msg != "" {
			fmt.Printf("FAIL %s: %s\n", c.name, msg)
			failed++
		} else {
			fmt.Printf("ok   %s: HTTP/2.0 %d\n", c.name, c.status)
		}
	}
	// The oversized bodies must not have been stored.
	if msg := run(client, *url, check{
		name: "nothing stored", method: "GET", path: "/v1/secret/data/go-big",
		status: 404,
	}); msg != "" {
		fmt.Printf("FAIL nothing stored: %s\n", msg)
		failed++
	} else {
		fmt.Println("ok   nothing stored: HTTP/2.0 404")
	}
	if failed > 0 {
		os.Exit(1)
	}
}

// run sends one request and returns "" when the answer is as expected, else what was wrong.
func run(client *http.Client, base string, c check) string {
	var body io.Reader
	length := int64(0)
	if c.body != nil {
		body, length = c.body()
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		return fmt.Sprintf("building the request: %v", err)
	}
	req.ContentLength = length
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Sprintf("no HTTP answer (a reset stream or closed connection?): %v", err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Sprintf("status %d, but reading the body failed: %v", resp.StatusCode, err)
	}
	if resp.ProtoMajor != 2 {
		return fmt.Sprintf("negotiated %s, not HTTP/2", resp.Proto)
	}
	if resp.StatusCode != c.status {
		return fmt.Sprintf("status %d, want %d: %s", resp.StatusCode, c.status, text)
	}
	var shaped struct {
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(text, &shaped); err != nil {
		return fmt.Sprintf("body is not Vault's error shape: %v: %q", err, text)
	}
	if c.want == "" {
		if len(shaped.Errors) != 0 {
			return fmt.Sprintf("unexpected errors %q", shaped.Errors)
		}
		return ""
	}
	for _, e := range shaped.Errors {
		if strings.Contains(e, c.want) {
			return ""
		}
	}
	return fmt.Sprintf("no error contains %q: %s", c.want, text)
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(2)
}
