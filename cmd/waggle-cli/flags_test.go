package main

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		cmd      string
		pos      []string
		server   string
		profile  string
		json     bool
		timeout  time.Duration
		usageErr string // non-empty: parse fails with a usage error containing it
	}{
		{name: "globals before the command", args: []string{"--profile", "bob", "--json", "whoami"}, cmd: "whoami", profile: "bob", json: true},
		{name: "globals after the command", args: []string{"whoami", "--profile", "bob", "--json"}, cmd: "whoami", profile: "bob", json: true},
		{name: "defaults", args: []string{"whoami"}, cmd: "whoami", profile: "default", timeout: 15 * time.Second},
		{name: "env fills in", args: []string{"whoami"}, env: map[string]string{"WAGGLE_SERVER": "http://env", "WAGGLE_CLI_PROFILE": "p"},
			cmd: "whoami", server: "http://env", profile: "p"},
		{name: "a flag wins over env, before the command too", args: []string{"--server", "http://flag", "whoami"},
			env: map[string]string{"WAGGLE_SERVER": "http://env"}, cmd: "whoami", server: "http://flag", profile: "default"},
		{name: "flags among arguments", args: []string{"send", "c1", "--timeout", "3s", "hello", "world"}, cmd: "send",
			pos: []string{"c1", "hello", "world"}, timeout: 3 * time.Second},
		{name: "everything after -- is an argument", args: []string{"send", "c1", "--", "--json", "-x"}, cmd: "send",
			pos: []string{"c1", "--json", "-x"}},
		{name: "a lone dash is an argument", args: []string{"send", "c1", "-"}, cmd: "send", pos: []string{"c1", "-"}},
		{name: "group subcommand", args: []string{"group", "create", "--title", "T", "u1", "u2"}, cmd: "group create", pos: []string{"u1", "u2"}},
		{name: "no command", args: nil, usageErr: "no command"},
		{name: "unknown command", args: []string{"frobnicate"}, usageErr: `unknown command "frobnicate"`},
		{name: "group without subcommand", args: []string{"group"}, usageErr: "group needs a subcommand"},
		{name: "too few arguments", args: []string{"history"}, usageErr: "usage: waggle-cli history"},
		{name: "too many arguments", args: []string{"whoami", "x"}, usageErr: "usage: waggle-cli whoami"},
		{name: "unknown flag", args: []string{"whoami", "--nope"}, usageErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := parse(tt.args, envOf(tt.env))
			if tt.usageErr != "" {
				var ue usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.usageErr) {
					t.Fatalf("parse(%q) = %v, want a usage error with %q", tt.args, err, tt.usageErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", tt.args, err)
			}
			if inv.cmd == nil || inv.cmd.name != tt.cmd {
				t.Fatalf("command = %v, want %q", inv.cmd, tt.cmd)
			}
			if tt.pos != nil && !slices.Equal(inv.args, tt.pos) {
				t.Errorf("arguments = %q, want %q", inv.args, tt.pos)
			}
			if tt.server != "" && inv.server != tt.server {
				t.Errorf("server = %q, want %q", inv.server, tt.server)
			}
			if tt.profile != "" && inv.profile != tt.profile {
				t.Errorf("profile = %q, want %q", inv.profile, tt.profile)
			}
			if inv.json != tt.json {
				t.Errorf("json = %v, want %v", inv.json, tt.json)
			}
			if tt.timeout != 0 && inv.timeout != tt.timeout {
				t.Errorf("timeout = %v, want %v", inv.timeout, tt.timeout)
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"help", "send"}, {"send", "--help"}, {"group", "add", "-h"}} {
		inv, err := parse(args, envOf(nil))
		if err != nil || !inv.help {
			t.Errorf("parse(%q) = help %v, %v; want help", args, inv.help, err)
		}
	}
}

func TestUsageListsEveryCommandAndItsFlags(t *testing.T) {
	var b bytes.Buffer
	usage(&b, nil)
	for _, c := range commands {
		if !strings.Contains(b.String(), c.name+" ") {
			t.Errorf("help does not list %q", c.name)
		}
	}
	b.Reset()
	usage(&b, findCommand("history"))
	for _, want := range []string{"--limit", "--before", "oldest first"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("history help lacks %q:\n%s", want, b.String())
		}
	}
}

func TestEveryCommandParsesItsFlags(t *testing.T) {
	for _, c := range commands {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		if c.setup(fs) == nil {
			t.Errorf("%s: setup returned no action", c.name)
		}
	}
}
