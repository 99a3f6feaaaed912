package main

import (
	"bytes"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/buildd-agent/buildd-agent/agent"
)

// The agent's own log never shows URL credentials or query tokens, in the
// message, in string and error attributes, in groups and in With
// attributes, for URLs net/url parses and for those it does not.
func TestLoggerRedactsURLs(t *testing.T) {
	secrets := []string{"s3cret", "T0KEN", "qt0ken", "pa/ss", "sigvalue"}
	// What url.Parse returns for a password it refuses.
	parseErr := &url.Error{Op: "parse", URL: "http://u:s3cret%zz@host/", Err: url.EscapeError("%zz")}
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log := newLogger(agent.LogConfig{Level: "debug", Format: format}, &buf)
		log = log.With("upstream", "http://proxy:s3cret@squid:3128")
		log.Info("Fetching by url http://T0KEN@files.example/x")
		log.Warn("download failed", "error", errors.New(`Get "https://files.example/f?token=qt0ken": EOF`),
			"location", "http://u:pa/ss@other/", "parse", parseErr)
		log.Error("grouped", slog.Group("req", "url", "https://h/x?X-Amz-Signature=sigvalue"))
		out := buf.String()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s log shows %q:\n%s", format, s, out)
			}
		}
		if !strings.Contains(out, "files.example") || !strings.Contains(out, "squid:3128") {
			t.Errorf("%s log lost the hosts:\n%s", format, out)
		}
	}
}
