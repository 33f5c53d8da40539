package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"
)

// Client sends requests to the admin API: to a running daemon over its
// socket (NewClient), or to a Service in this process (LocalClient) when
// no daemon runs. Both answer alike, status codes and messages included.
type Client struct {
	where string // said in errors: the socket, or "this process"
	hc    *http.Client
}

// NewClient returns a client for the daemon whose socket is at path.
func NewClient(path string) *Client {
	return &Client{where: path, hc: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// LocalClient returns a client whose requests s serves in this process.
func LocalClient(s *Service) *Client {
	return &Client{where: "this process", hc: &http.Client{Transport: inProcess{s.Handler()}}}
}

// ErrNoDaemon says that no daemon listens on the socket.
var ErrNoDaemon = errors.New("admin: no moat daemon is running")

// requestTimeout bounds a request whose body and answer are JSON values;
// streams (an export, an import) take as long as they take.
const requestTimeout = 30 * time.Second

// Do sends a request and reads the answer. body is nil, an io.Reader
// (sent as it is read) or a value (sent as JSON); out is nil, an io.Writer
// (the answer is copied to it as it comes) or a pointer (the JSON answer
// is decoded into it). A request with neither a reader nor a writer gives
// up after requestTimeout. When the API refuses the request, the error is
// the API's own message.
func (c *Client) Do(method, path string, body, out any) error {
	ctx := context.Background()
	rd, streamIn := body.(io.Reader)
	w, streamOut := out.(io.Writer)
	if !streamIn && !streamOut {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	if !streamIn && body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://moat"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return ErrNoDaemon
		}
		return fmt.Errorf("admin: %s: %w", c.where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("admin: %s", resp.Status)
	}
	if streamOut {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// Escape escapes a path element (an IPv6 CIDR has a slash).
func Escape(s string) string { return url.PathEscape(s) }

// inProcess serves a request with a handler in this process and streams
// the answer back as the handler writes it, so that an export made with
// no daemon running is never held whole in memory.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	w := &pipeResponse{header: http.Header{}, body: pw, ready: make(chan struct{})}
	go func() {
		t.h.ServeHTTP(w, req)
		w.WriteHeader(http.StatusOK) // a handler that wrote nothing answered 200
		pw.Close()
	}()
	<-w.ready
	return &http.Response{
		Status: fmt.Sprintf("%d %s", w.code, http.StatusText(w.code)), StatusCode: w.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, Body: pr, ContentLength: -1, Request: req,
	}, nil
}

// pipeResponse is the http.ResponseWriter of an in-process request: the
// status is known once the handler writes its header or first byte.
type pipeResponse struct {
	header http.Header
	body   *io.PipeWriter
	code   int
	once   sync.Once
	ready  chan struct{}
}

func (w *pipeResponse) Header() http.Header { return w.header }

func (w *pipeResponse) WriteHeader(code int) {
	w.once.Do(func() {
		w.code = code
		close(w.ready)
	})
}

func (w *pipeResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}
