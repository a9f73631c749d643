package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// globals are the options every command takes, before or after its name.
type globals struct {
	server  string // empty: the profile's server, else defaultServer
	edge    string // empty: the server
	profile string
	config  string
	json    bool
	timeout time.Duration
}

const defaultServer = "http://127.0.0.1:8080"

// globalFlags declares the global options on fs, each with the
// environment variable it falls back to.
func globalFlags(fs *flag.FlagSet, g *globals) map[string]string {
	fs.StringVar(&g.server, "server", "", "Waggle URL for unary calls and, unless --edge, the stream (default: the profile's, else "+defaultServer+")")
	fs.StringVar(&g.edge, "edge", "", "edge URL for the stream (tail, chat, send --stream); default: the server")
	fs.StringVar(&g.profile, "profile", "default", "name of the stored login to use (one file per profile)")
	fs.StringVar(&g.config, "config", "", "path of the credentials file, instead of the profile's")
	fs.BoolVar(&g.json, "json", false, "print JSON instead of text")
	fs.DurationVar(&g.timeout, "timeout", 15*time.Second, "deadline of each unary call")
	return map[string]string{
		"server":  "WAGGLE_SERVER",
		"edge":    "WAGGLE_EDGE",
		"profile": "WAGGLE_CLI_PROFILE",
		"config":  "WAGGLE_CLI_CONFIG",
	}
}

// action runs a parsed command.
type action func(ctx context.Context, c *cli, args []string) error

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis of the positional arguments
	summary string
	min     int // positional arguments required
	max     int // positional arguments allowed; -1: any number
	// setup declares the command's own flags on fs and returns its action,
	// which reads them.
	setup func(fs *flag.FlagSet) action
}

// invocation is a parsed command line.
type invocation struct {
	globals
	cmd    *command // nil with help: waggle-cli's own help
	args   []string
	action action
	help   bool
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// parse reads a command line (without the program name). Global options
// may come before or after the command name; a flag wins over its
// environment variable, read with getenv.
func parse(args []string, getenv func(string) string) (invocation, error) {
	var inv invocation
	gfs := flag.NewFlagSet("waggle-cli", flag.ContinueOnError)
	gfs.SetOutput(io.Discard)
	envOf := globalFlags(gfs, &inv.globals)
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			inv.help = true
			return inv, nil
		}
		return inv, usagef("%v (see waggle-cli --help)", err)
	}
	rest := gfs.Args()
	if len(rest) == 0 {
		return inv, usagef("no command given (see waggle-cli --help)")
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		inv.help = true
		if len(rest) == 0 {
			return inv, nil
		}
		name, rest = rest[0], rest[1:]
	}
	if name == "group" {
		if len(rest) == 0 {
			return inv, usagef("group needs a subcommand: create, add, remove, members, rename or leave")
		}
		name, rest = "group "+rest[0], rest[1:]
	}
	cmd := findCommand(name)
	if cmd == nil {
		return inv, usagef("unknown command %q (see waggle-cli --help)", name)
	}
	inv.cmd = cmd
	if inv.help {
		return inv, nil
	}

	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	given := map[string]string{} // global flags given before the command
	gfs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	globalFlags(fs, &inv.globals) // resets the globals to their defaults,
	explicit := map[string]bool{}
	for name, v := range given { // so set again those given
		explicit[name] = true
		_ = fs.Set(name, v)
	}
	inv.action = cmd.setup(fs)
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			inv.help = true
			return inv, nil
		}
		return inv, usagef("%s: %v (see waggle-cli %s --help)", cmd.name, err, cmd.name)
	}
	if len(pos) < cmd.min || (cmd.max >= 0 && len(pos) > cmd.max) {
		return inv, usagef("usage: waggle-cli %s %s", cmd.name, cmd.args)
	}
	inv.args = pos

	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	for name, variable := range envOf {
		if v := getenv(variable); v != "" && !explicit[name] {
			if err := fs.Set(name, v); err != nil {
				return inv, usagef("%s: invalid value %q: %v", variable, v, err)
			}
		}
	}
	return inv, nil
}

// parseInterleaved parses flags placed anywhere among the positional
// arguments, which it returns. Everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		consumed := len(args) - fs.NArg()
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, fs.Args()...), nil
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// usage writes the help of cmd, or waggle-cli's own help for nil.
func usage(w io.Writer, cmd *command) {
	var g globals
	if cmd == nil {
		fmt.Fprint(w, "waggle-cli is a terminal client for Waggle.\n\nUsage: waggle-cli [global flags] <command> [flags] [arguments]\n\nCommands:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range commands {
			fmt.Fprintf(tw, "  %s %s\t%s\n", c.name, c.args, c.summary)
		}
		tw.Flush()
		fmt.Fprint(w, "\nGlobal flags (also accepted after the command):\n")
		gfs := flag.NewFlagSet("", flag.ContinueOnError)
		printFlags(w, gfs, globalFlags(gfs, &g))
		fmt.Fprint(w, "\nExit codes: 0 ok, 1 the call failed (the server's error code is printed), 2 usage.\n"+
			"Run 'waggle-cli <command> --help' for a command's flags. See docs/cli.md.\n")
		return
	}
	fmt.Fprintf(w, "Usage: waggle-cli %s %s\n\n%s.\n", cmd.name, cmd.args, cmd.summary)
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.setup(fs)
	if hasFlags(fs) {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs, nil)
	}
	fmt.Fprint(w, "\nGlobal flags: --server, --edge, --profile, --config, --json, --timeout (see waggle-cli --help).\n")
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func printFlags(w io.Writer, fs *flag.FlagSet, envOf map[string]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		line := "  --" + f.Name
		if name, _ := flag.UnquoteUsage(f); name != "" {
			line += " " + name
		}
		extra := ""
		if v := envOf[f.Name]; v != "" {
			extra = " [$" + v + "]"
		}
		if f.DefValue != "" && f.DefValue != "false" && !strings.Contains(f.Usage, "default") {
			extra += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "%s\t%s%s\n", line, f.Usage, extra)
	})
	tw.Flush()
}
