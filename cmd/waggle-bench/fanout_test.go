package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wagglechat/waggle/bench"
)

func TestParseFanout(t *testing.T) {
	o, err := parseFanout([]string{"--target", "waggle", "--protocol", "grpc", "--edges", "http://a:1,http://b:2/", "--api", "http://a:0",
		"--members", "10000", "--online", "2000", "--rate", "600", "--duration", "5s", "--state", "/tmp/s.json", "--pids", "7,8", "--json"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Target != "waggle" || c.Protocol != "grpc" || !slices.Equal(c.Edges, []string{"http://a:1", "http://b:2"}) || c.API != "http://a:0" ||
		c.Members != 10000 || c.Online != 2000 || c.Rate != 600 || c.Duration != 5*time.Second || c.Drain != 2*time.Second ||
		c.State != "/tmp/s.json" || !slices.Equal(c.PIDs, []int{7, 8}) || !o.json || c.Centrifugo != bench.CentrifugoDefaults {
		t.Fatalf("parsed %+v", o)
	}
	for _, args := range [][]string{{"--pids", "x"}, {"--nope"}, {"extra"}} {
		var ue usageError
		if _, err := parseFanout(args, &bytes.Buffer{}); !errors.As(err, &ue) {
			t.Errorf("parseFanout(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestParseMatrix(t *testing.T) {
	c, _, raw, err := parseMatrix([]string{"--members", "100", "--rates", "10, 50", "--reps", "1", "--targets", "floor-grpc,centrifugo", "--raw", "r.jsonl"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Members != 100 || !slices.Equal(c.Rates, []float64{10, 50}) || c.Reps != 1 || !slices.Equal(c.Targets, []string{"floor-grpc", "centrifugo"}) || raw != "r.jsonl" {
		t.Fatalf("parsed %+v", c)
	}
	if _, _, _, err := parseMatrix([]string{"--rates", "10,fast"}, &bytes.Buffer{}); err == nil {
		t.Fatal("a bad rate parsed")
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{[]string{"load", "--shape", "ring", "--edges", "http://127.0.0.1:1"}, 2, `shape "ring"`},
		{[]string{"--shape", "ring", "--edges", "http://127.0.0.1:1"}, 2, `shape "ring"`}, // load is the default
		{[]string{"fanout", "--target", "nats"}, 2, `target "nats"`},
		{[]string{"fanout", "--target", "floor", "--online", "3", "--members", "2"}, 2, "online"},
		{[]string{"idle", "--target", "floor"}, 2, "--pids"},
		{[]string{"floor-server", "--transport", "quic"}, 2, `"quic"`},
		{[]string{"matrix", "--targets", "nats"}, 2, `target "nats"`},
		{[]string{"centrifugo-config", "--addr", "nohost"}, 2, "nohost"},
		{[]string{"centrifugo-config", "--addr", "127.0.0.1:18300"}, 0, `"hmac_secret_key": "waggle-bench-centrifugo-hmac-secret"`},
		{[]string{"fanout", "-h"}, 0, "Usage: waggle-bench fanout"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errOut)
		if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.out) {
			t.Errorf("%q: exit %d, want %d; output %q lacks %q", tt.args, code, tt.code, out.String()+errOut.String(), tt.out)
		}
	}
	var out bytes.Buffer
	run(context.Background(), []string{"centrifugo-config"}, &out, &bytes.Buffer{})
	if !json.Valid(out.Bytes()) {
		t.Fatalf("centrifugo-config wrote %q", out.String())
	}
}
