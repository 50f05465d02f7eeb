// Package cli owns the command-line conventions that station and upstream-ca share, so both behave alike:
// subcommands of one or two words, each with its own flag set; flags accepted before, between and after
// positional arguments; help per subcommand (synopsis, every flag with its default, an example) on -h,
// --help or `PROG help COMMAND`, printed to stdout with exit 0; every error one line on stderr; and the
// exit codes 0 (done), 1 (failed: a board, a check, a service) and 2 (usage or configuration). The
// commands themselves, their flags and their wiring stay in cmd/.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Exit codes of every tpmline binary.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// UsageError is a mistake in the command line: an unknown flag, a missing or malformed argument. Its
// line ends with where to find the command's help.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef makes a *UsageError.
func Usagef(format string, args ...any) error { return &UsageError{fmt.Sprintf(format, args...)} }

// RefusalError is a command line that is well formed but cannot be carried out as given: an unknown or
// closed batch, a configuration file that does not load, a database that does not exist. It exits 2 like
// a usage error, without pointing at the help, since the flags were right.
type RefusalError struct{ Msg string }

func (e *RefusalError) Error() string { return e.Msg }

// Refusef makes a *RefusalError.
func Refusef(format string, args ...any) error { return &RefusalError{fmt.Sprintf(format, args...)} }

// ErrFailed is returned by a command that failed and has already said why on stderr: exit 1, nothing
// more printed.
var ErrFailed = errors.New("failed")

// helpRequest is what Parse returns for -h or --help: the dispatcher prints the command's help.
type helpRequest struct{}

func (helpRequest) Error() string { return "help requested" }

// Command is one subcommand.
type Command struct {
	Name     string // one or two words: "serve", "batch open"
	Synopsis string // what follows the name in the usage line: "--id ID [--quantity N]", "FILE [--sig F]"
	Summary  string // one sentence for the command list and the help
	Example  string // one or more command lines, shown under "example:"
	// Run registers the command's flags on fs (which holds the globals already), parses args with Parse
	// before it does anything else, and runs. Help for the command runs it with "--help" and lists the
	// flags it registered.
	Run func(ctx context.Context, fs *flag.FlagSet, args []string) error
}

// Program is a binary's commands.
type Program struct {
	Name    string // "station"
	Summary string // what the program is, first line of its help
	// Globals registers the flags every command takes, before or after its name (may be nil).
	Globals func(fs *flag.FlagSet)
	// Default runs when no command is given ("" makes that a usage error).
	Default  string
	Commands []Command
	// Footer is printed at the end of the program's help (exit codes, documents).
	Footer string
}

// NewFlagSet returns a flag set that reports to its caller instead of printing or exiting.
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// Parse parses fs's flags given before, between or after the positional arguments ("board show SN
// --json"); "--" ends the flags. Afterwards fs.Args() are the positional arguments in order. -h and
// --help make it return the request for the command's help, which Main prints.
func Parse(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return helpRequest{}
			}
			return Usagef("%v", err)
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// Main runs the command args name (after the program name, globals first if any) and returns the exit
// code. Output goes to stdout, errors (one line each) to stderr.
func (p *Program) Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	gfs := NewFlagSet(p.Name)
	if p.Globals != nil {
		p.Globals(gfs)
	}
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p.printHelp(stdout)
			return ExitOK
		}
		fmt.Fprintf(stderr, "%s: %v (see '%s help')\n", p.Name, err, p.Name)
		return ExitUsage
	}
	rest := gfs.Args()
	if len(rest) == 0 {
		if p.Default == "" {
			fmt.Fprintf(stderr, "%s: no command given (see '%s help')\n", p.Name, p.Name)
			return ExitUsage
		}
		rest = strings.Fields(p.Default)
	}
	if rest[0] == "help" {
		if len(rest) == 1 {
			p.printHelp(stdout)
			return ExitOK
		}
		c, _ := p.find(rest[1:])
		if c == nil {
			fmt.Fprintf(stderr, "%s help: unknown command %q (see '%s help')\n", p.Name, strings.Join(rest[1:], " "), p.Name)
			return ExitUsage
		}
		rest = append(strings.Fields(c.Name), "--help")
	}
	c, n := p.find(rest)
	if c == nil {
		if subs := p.subcommands(rest[0]); len(subs) > 0 {
			if len(rest) > 1 && (rest[1] == "-h" || rest[1] == "--help" || rest[1] == "-help") {
				p.printHelp(stdout)
				return ExitOK
			}
			fmt.Fprintf(stderr, "%s %s: give one of %s (see '%s help')\n", p.Name, rest[0], strings.Join(subs, ", "), p.Name)
			return ExitUsage
		}
		fmt.Fprintf(stderr, "%s: unknown command %q (see '%s help')\n", p.Name, strings.Join(rest, " "), p.Name)
		return ExitUsage
	}
	fs := p.flagSet(c)
	err := c.Run(ctx, fs, rest[n:])
	var ue *UsageError
	var re *RefusalError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrFailed):
		return ExitFailed
	case errors.As(err, &helpRequest{}):
		p.printCommandHelp(stdout, c, fs)
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s %s: %s (see '%s %s --help')\n", p.Name, c.Name, oneLine(ue.Msg), p.Name, c.Name)
		return ExitUsage
	case errors.As(err, &re):
		fmt.Fprintf(stderr, "%s %s: %s\n", p.Name, c.Name, oneLine(re.Msg))
		return ExitUsage
	}
	fmt.Fprintf(stderr, "%s %s: %s\n", p.Name, c.Name, oneLine(err.Error()))
	return ExitFailed
}

// flagSet is the globals, to which Run adds the command's flags.
func (p *Program) flagSet(c *Command) *flag.FlagSet {
	fs := NewFlagSet(p.Name + " " + c.Name)
	if p.Globals != nil {
		p.Globals(fs)
	}
	return fs
}

// find matches the longest command name at the start of args.
func (p *Program) find(args []string) (*Command, int) {
	var best *Command
	n := 0
	for i := range p.Commands {
		c := &p.Commands[i]
		words := strings.Fields(c.Name)
		if len(args) >= len(words) && len(words) > n && strings.Join(args[:len(words)], " ") == c.Name {
			best, n = c, len(words)
		}
	}
	return best, n
}

// subcommands lists the second words of the two-word commands that start with first.
func (p *Program) subcommands(first string) []string {
	var subs []string
	for _, c := range p.Commands {
		if w := strings.Fields(c.Name); len(w) == 2 && w[0] == first {
			subs = append(subs, w[1])
		}
	}
	return subs
}

func (p *Program) printHelp(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nusage: %s", p.Summary, p.Name)
	if p.Globals != nil {
		fmt.Fprint(w, " [global flags]")
	}
	fmt.Fprint(w, " COMMAND [flags]\n\ncommands:\n")
	width := 0
	for _, c := range p.Commands {
		width = max(width, len(c.Name))
	}
	for _, c := range p.Commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.Name, c.Summary)
	}
	if p.Globals != nil {
		fmt.Fprint(w, "\nglobal flags (before or after the command):\n")
		fs := NewFlagSet(p.Name)
		p.Globals(fs)
		printFlags(w, fs, nil)
	}
	fmt.Fprintf(w, "\n'%s help COMMAND' or '%s COMMAND --help' shows a command's flags, their defaults and an example.\n", p.Name, p.Name)
	if p.Footer != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(p.Footer, "\n"))
	}
}

// printCommandHelp prints c's help; fs holds the flags its Run registered.
func (p *Program) printCommandHelp(w io.Writer, c *Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s %s", p.Name, c.Name)
	if c.Synopsis != "" {
		fmt.Fprintf(w, " %s", c.Synopsis)
	}
	fmt.Fprintf(w, "\n\n%s\n", c.Summary)
	globals := map[string]bool{}
	if p.Globals != nil {
		gfs := NewFlagSet(p.Name)
		p.Globals(gfs)
		gfs.VisitAll(func(f *flag.Flag) { globals[f.Name] = true })
	}
	own := 0
	fs.VisitAll(func(f *flag.Flag) {
		if !globals[f.Name] {
			own++
		}
	})
	if own > 0 {
		fmt.Fprint(w, "\nflags:\n")
		printFlags(w, fs, globals)
	}
	if len(globals) > 0 {
		fmt.Fprintf(w, "\nglobal flags (see '%s help'):", p.Name)
		var names []string
		for n := range globals {
			names = append(names, "--"+n)
		}
		sort.Strings(names)
		fmt.Fprintf(w, " %s\n", strings.Join(names, " "))
	}
	if c.Example != "" {
		fmt.Fprint(w, "\nexample:\n")
		for _, line := range strings.Split(strings.TrimRight(c.Example, "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
}

// printFlags lists fs's flags (but those in skip), one per line: --name ARG, its usage text and its
// default when it has one. A word in `backquotes` in the usage text names the argument, as in package flag.
func printFlags(w io.Writer, fs *flag.FlagSet, skip map[string]bool) {
	type line struct{ left, right string }
	var lines []line
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		if skip[f.Name] {
			return
		}
		arg, usage := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if arg != "" {
			left += " " + strings.ToUpper(arg)
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" && !strings.Contains(usage, "(default") {
			if _, isNumber := strconv.ParseFloat(d, 64); isNumber != nil {
				d = strconv.Quote(d)
			}
			usage += fmt.Sprintf(" (default %s)", d)
		}
		lines = append(lines, line{left, usage})
		width = max(width, len(left))
	})
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l.left, l.right)
	}
}

// oneLine keeps an error to one line: a message that quotes a multi-line answer must not spill.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
