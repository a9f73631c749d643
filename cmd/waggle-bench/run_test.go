package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagglechat/waggle/bench"
)

func TestParse(t *testing.T) {
	o, err := parse([]string{"--edges", "http://a:1/, http://b:2", "--pids", "12,34", "--shape", "large", "--rate", "250",
		"--duration", "5s", "--protocol", "grpc", "--json"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if !slices.Equal(c.Edges, []string{"http://a:1", "http://b:2"}) || !slices.Equal(c.PIDs, []int{12, 34}) ||
		c.Shape != bench.ShapeLarge || c.Rate != 250 || c.Duration != 5*time.Second || c.Protocol != "grpc" || !o.json {
		t.Fatalf("parsed %+v", o)
	}
	for _, args := range [][]string{{"--pids", "x"}, {"--nope"}, {"extra"}} {
		var ue usageError
		if _, err := parse(args, &bytes.Buffer{}); !errors.As(err, &ue) {
			t.Errorf("parse(%q) = %v, want a usage error", args, err)
		}
	}
	if _, err := parse([]string{"-h"}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestFilesNeeded(t *testing.T) {
	c := bench.Config{Users: 1000, ConnsPerUser: 3, StreamsPerConn: 2}
	if got := filesNeeded(c); got != 1500+64 {
		t.Fatalf("filesNeeded = %d, want 1564", got)
	}
}

func TestExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--shape", "ring", "--edges", "http://127.0.0.1:1"}, &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), `shape "ring"`) {
		t.Errorf("bad shape: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	limit, err := raiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	users := strconv.FormatUint(limit+1, 10)
	if code := run(context.Background(), []string{"--users", users, "--edges", "http://127.0.0.1:1"}, &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "open files") {
		t.Errorf("too many connections: exit %d, %q", code, errOut.String())
	}
}
