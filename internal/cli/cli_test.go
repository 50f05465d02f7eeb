package cli

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"
)

func testProgram(got *[]string, flagV *bool) *Program {
	var verbose bool
	return &Program{
		Name: "prog", Summary: "prog: a test",
		Globals: func(fs *flag.FlagSet) { fs.BoolVar(&verbose, "v", verbose, "verbose") },
		Commands: []Command{
			{Name: "thing show", Synopsis: "NAME [--json]", Summary: "show a thing", Example: "prog thing show a --json",
				Run: func(ctx context.Context, fs *flag.FlagSet, args []string) error {
					asJSON := fs.Bool("json", false, "print as JSON")
					n := fs.Int("n", 3, "`N` things")
					if err := Parse(fs, args); err != nil {
						return err
					}
					*got, *flagV = fs.Args(), *asJSON
					switch {
					case fs.NArg() != 1:
						return Usagef("give one NAME")
					case fs.Arg(0) == "gone":
						return Refusef("no thing %s", fs.Arg(0))
					case *n < 0:
						return ErrFailed
					}
					return nil
				}},
		},
	}
}

func TestMain_(t *testing.T) {
	for _, c := range []struct {
		args           []string
		code           int
		pos            string
		json           bool
		stdout, stderr string
	}{
		{args: []string{"thing", "show", "a", "--json"}, code: 0, pos: "a", json: true},
		{args: []string{"-v", "thing", "show", "--json", "a"}, code: 0, pos: "a", json: true},
		{args: []string{"thing", "show", "--", "--json"}, code: 0, pos: "--json"},
		{args: []string{"thing", "show", "--help"}, code: 0, stdout: `--n N   N things (default 3)`},
		{args: []string{"help", "thing", "show"}, code: 0, stdout: "example:\n  prog thing show a --json"},
		{args: []string{"--help"}, code: 0, stdout: "thing show  show a thing"},
		{args: []string{"thing", "show"}, code: 2, stderr: "prog thing show: give one NAME (see 'prog thing show --help')\n"},
		{args: []string{"thing", "show", "gone"}, code: 2, stderr: "prog thing show: no thing gone\n"},
		{args: []string{"thing", "show", "x", "--n", "-1"}, code: 1},
		{args: []string{"thing", "show", "--bogus"}, code: 2, stderr: "flag provided but not defined: -bogus"},
		{args: []string{"thing"}, code: 2, stderr: "prog thing: give one of show"},
		{args: []string{"nope"}, code: 2, stderr: `unknown command "nope"`},
		{args: nil, code: 2, stderr: "no command given"},
	} {
		var pos []string
		var asJSON bool
		var out, errb bytes.Buffer
		code := testProgram(&pos, &asJSON).Main(context.Background(), c.args, &out, &errb)
		if code != c.code || (c.pos != "" && strings.Join(pos, " ") != c.pos) || asJSON != c.json ||
			!strings.Contains(out.String(), c.stdout) || !strings.Contains(errb.String(), c.stderr) ||
			strings.Count(strings.TrimSpace(errb.String()), "\n") > 0 {
			t.Errorf("%v: exit %d, args %q json %v\nstdout %q\nstderr %q", c.args, code, pos, asJSON, out.String(), errb.String())
		}
	}
}
