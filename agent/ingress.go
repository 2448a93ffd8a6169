package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outrigger/outrigger/sidecar"
	"github.com/outrigger/outrigger/watch"
)

// An ingress agent (ingress_name, -ingress NAME) serves the ingress
// configuration stored in K/V under IngressKeyPrefix+NAME, so that every
// ingress agent of that name shares it and follows changes live. The
// configuration file's `ingress` section seeds the key when it is absent
// (as Consul's config_entries.bootstrap does), and is served from the
// start, before the servers are reachable. PUT /v1/outrigger/ingress/NAME
// validates a configuration and stores it.

// IngressKeyPrefix is where ingress configurations live in K/V.
const IngressKeyPrefix = "outrigger/ingress/"

// maxIngressBody bounds a configuration sent to the API.
const maxIngressBody = 1 << 20

type ingress struct {
	name   string
	seed   []byte // the file's configuration as JSON, or nil
	errors prometheus.Counter
}

// newIngress reads the ingress section and, when there is one, serves it
// at once: a bad configuration or a port in use fails the start.
func (a *Agent) newIngress() error {
	raw, hasSection := a.cfg.Extra["ingress"]
	if a.cfg.IngressName == "" {
		if hasSection {
			return errors.New("agent: ingress: the ingress section needs ingress_name (-ingress NAME), the name it is shared under in K/V")
		}
		return nil
	}
	in := &ingress{name: a.cfg.IngressName}
	in.errors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outrigger_ingress_config_errors_total",
		Help: "Ingress configurations read from K/V that were invalid or could not be applied (the last good one stays).",
	})
	a.reg.MustRegister(in.errors)
	if hasSection {
		b, err := json.Marshal(raw)
		if err != nil {
			return fmt.Errorf("agent: ingress: %w", err)
		}
		cfg, err := sidecar.ParseIngressConfig(b)
		if err != nil {
			return fmt.Errorf("agent: ingress: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
		defer cancel()
		if err := a.proxy.ApplyIngress(ctx, cfg); err != nil {
			return fmt.Errorf("agent: ingress: %w", err)
		}
		in.seed = b
	}
	a.ingress = in
	return nil
}

// registerIngressAPI adds the ingress endpoints; every agent has them
// (any agent can store a configuration for the ingress agents).
func (a *Agent) registerIngressAPI() {
	a.http.Handle("GET /v1/outrigger/ingress/{name}", http.HandlerFunc(a.ingressGet))
	a.http.Handle("PUT /v1/outrigger/ingress/{name}", http.HandlerFunc(a.ingressPut))
	a.http.Handle("DELETE /v1/outrigger/ingress/{name}", http.HandlerFunc(a.ingressDelete))
}

func (a *Agent) startIngress(ctx context.Context) {
	if a.ingress == nil {
		return
	}
	go a.ingressLoop(ctx)
}

// ingressLoop stores the configuration file's ingress in K/V when the key
// is absent, then follows the key (watch.Follow: blocking queries through
// this agent's API) and applies each valid configuration; an invalid one
// is logged and counted, and the last good one keeps serving.
func (a *Agent) ingressLoop(ctx context.Context) {
	in := a.ingress
	key := IngressKeyPrefix + in.name
	log := a.log.With("component", "ingress", "name", in.name)
	client, err := watch.NewClient(a.selfHTTPAddr())
	if err != nil {
		log.Error("cannot follow the ingress configuration in K/V", "err", err)
		return
	}
	if in.seed != nil && !a.seedIngress(ctx, log, key) {
		return
	}
	last := in.seed
	q := watch.Query{Path: "/v1/kv/" + key, Params: url.Values{"raw": {""}}}
	opts := watch.Options{MinBackoff: 250 * time.Millisecond, MaxBackoff: 10 * time.Second, Logger: log}
	_ = watch.Follow(ctx, client, q, opts, func(res watch.Result) {
		switch {
		case !res.Found:
			if last != nil {
				log.Info("ingress configuration removed from K/V; closing the ingress listeners", "key", key)
				a.applyIngressLogged(ctx, log, nil)
				last = nil
			}
			return
		case bytes.Equal(res.Body, last):
			return
		}
		cfg, err := sidecar.ParseIngressConfig(res.Body)
		if err != nil {
			in.errors.Inc()
			log.Error("invalid ingress configuration in K/V; the last good one stays", "key", key, "err", err)
			return
		}
		if a.applyIngressLogged(ctx, log, cfg) {
			last = res.Body
		}
	})
}

// seedIngress stores the file's configuration under key unless the key
// exists (?cas=0), retrying with back-off until it is done; false when ctx
// ended first.
func (a *Agent) seedIngress(ctx context.Context, log *slog.Logger, key string) bool {
	backoff := 250 * time.Millisecond
	for {
		created, err := a.selfKV(ctx, http.MethodPut, key, "cas=0", a.ingress.seed)
		if err == nil {
			if string(bytes.TrimSpace(created)) == "true" {
				log.Info("stored the configuration file's ingress in K/V", "key", key)
			}
			return true
		}
		log.Debug("storing the ingress configuration", "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (a *Agent) applyIngressLogged(ctx context.Context, log *slog.Logger, cfg *sidecar.IngressConfig) bool {
	actx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	if err := a.proxy.ApplyIngress(actx, cfg); err != nil {
		a.ingress.errors.Inc()
		log.Error("could not apply the ingress configuration; the last good one stays", "err", err)
		return false
	}
	n := 0
	if cfg != nil {
		n = len(cfg.Listeners)
	}
	log.Info("ingress configuration applied", "listeners", n)
	return true
}

// selfURL is the agent's own HTTP API (see selfHTTPAddr).
func (a *Agent) selfURL() string { return "http://" + a.selfHTTPAddr() }

var selfClient = &http.Client{Timeout: 10 * time.Minute}

// selfKV sends one K/V request to the agent's own API (which forwards it
// to the servers) and returns the body of a 200.
func (a *Agent) selfKV(ctx context.Context, method, key, query string, body []byte) ([]byte, error) {
	u := a.selfURL() + "/v1/kv/" + key
	if query != "" {
		u += "?" + query
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	resp, err := selfClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxIngressBody+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &kvStatusError{code: resp.StatusCode, msg: string(bytes.TrimSpace(b))}
	}
	return b, nil
}

type kvStatusError struct {
	code int
	msg  string
}

func (e *kvStatusError) Error() string { return fmt.Sprintf("K/V: %d %s", e.code, e.msg) }

// The API: GET returns the stored configuration, PUT validates and stores
// one (?cas as in /v1/kv), DELETE removes it.

func (a *Agent) ingressGet(w http.ResponseWriter, r *http.Request) {
	b, err := a.selfKV(r.Context(), http.MethodGet, IngressKeyPrefix+r.PathValue("name"), "raw", nil)
	if err != nil {
		writeKVError(w, err, "no ingress configuration named "+strconv.Quote(r.PathValue("name")))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (a *Agent) ingressPut(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	body, err := io.ReadAll(io.LimitReader(r.Body, maxIngressBody+1))
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxIngressBody {
		http.Error(w, fmt.Sprintf("ingress configuration larger than %d bytes", maxIngressBody), http.StatusRequestEntityTooLarge)
		return
	}
	if _, err := sidecar.ParseIngressConfig(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := url.Values{}
	if cas := r.URL.Query().Get("cas"); cas != "" {
		q.Set("cas", cas)
	}
	out, err := a.selfKV(r.Context(), http.MethodPut, IngressKeyPrefix+name, q.Encode(), body)
	if err != nil {
		writeKVError(w, err, "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func (a *Agent) ingressDelete(w http.ResponseWriter, r *http.Request) {
	out, err := a.selfKV(r.Context(), http.MethodDelete, IngressKeyPrefix+r.PathValue("name"), "", nil)
	if err != nil {
		writeKVError(w, err, "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func writeKVError(w http.ResponseWriter, err error, notFound string) {
	var se *kvStatusError
	if errors.As(err, &se) {
		msg := se.msg
		if se.code == http.StatusNotFound && notFound != "" {
			msg = notFound
		}
		http.Error(w, msg, se.code)
		return
	}
	http.Error(w, err.Error(), http.StatusBadGateway)
}
