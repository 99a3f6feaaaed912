package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RevokeTimeout bounds one revocation request (as the reference).
const RevokeTimeout = 15 * time.Second

// revokeClient talks to the revocation endpoint directly: never through an
// environment proxy, never following a redirect with the credentials.
var revokeClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, MaxIdleConns: 1, IdleConnTimeout: time.Second},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid revocation endpoint %q: want an http(s) URL", truncate(endpoint, 200))
	}
	return nil
}

// Revoke revokes the token in upstream (proxy_url) at endpoint
// (revocation_endpoint): "DELETE endpoint" with Basic authentication taken
// from upstream, within RevokeTimeout. It writes "Revoking proxy token..."
// and the outcome to log (the build log). The error is for the agent log
// only: a failed revocation must never fail a build.
func Revoke(ctx context.Context, upstream, endpoint string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	up, err := parseUpstream(upstream)
	if err != nil {
		fmt.Fprintf(log, "Unable to revoke token: %v\n", err)
		return fmt.Errorf("cannot revoke proxy token: %w", err)
	}
	var pairs []string
	for _, s := range up.secrets() {
		pairs = append(pairs, s, "********")
	}
	return revoke(ctx, up, endpoint, log, strings.NewReplacer(pairs...), false)
}

func revoke(ctx context.Context, up *upstream, endpoint string, log io.Writer, mask *strings.Replacer, fetchService bool) error {
	fmt.Fprintln(log, "Revoking proxy token...")
	fail := func(err error) error {
		msg := mask.Replace(fmt.Sprintf("Unable to revoke token for %s: %v", up.user, err))
		fmt.Fprintln(log, msg)
		return errors.New(msg)
	}
	if err := checkEndpoint(endpoint); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, RevokeTimeout)
	defer cancel()
	var body io.Reader
	if fetchService {
		// The fetch service's form (revoke_proxy_token with use_fetch_service).
		b, _ := json.Marshal(map[string]string{"token": up.pass})
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, endpoint, body)
	if err != nil {
		return fail(err)
	}
	if fetchService {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.SetBasicAuth(up.user, up.pass)
	}
	resp, err := revokeClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is already in the message below
		}
		return fail(fmt.Errorf("DELETE %s: %w", endpoint, err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fail(fmt.Errorf("DELETE %s: HTTP %s", endpoint, resp.Status))
	}
	fmt.Fprintf(log, "Revoked proxy token for %s (HTTP %s)\n", mask.Replace(up.user), resp.Status)
	return nil
}
