// Command kpoguard is an admission webhook that enforces platform policy on
// the pods Apache Airflow's KubernetesPodOperator creates, and a CLI to
// check pods against that policy offline.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes of every subcommand.
const (
	exitOK       = 0
	exitDenied   = 1
	exitBadInput = 2
)

const usage = `kpoguard guards the task pods of Airflow's KubernetesPodOperator.

Usage:
  kpoguard serve        run the admission webhook server
  kpoguard check        check pods against a policy, offline
  kpoguard audit        review a cluster's running task pods against the policy
  kpoguard policy lint  validate a policy file
  kpoguard version      print the version

Run "kpoguard <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitBadInput
	}
	switch cmd, rest := args[0], args[1:]; {
	case cmd == "serve":
		return serve(rest, stderr)
	case cmd == "check":
		return check(rest, stdin, stdout, stderr)
	case cmd == "audit":
		return auditCommand(rest, stdout, stderr)
	case cmd == "policy" && len(rest) > 0 && rest[0] == "lint":
		return lint(rest[1:], stdout, stderr)
	case cmd == "version":
		fmt.Fprintln(stdout, "kpoguard", version)
		return exitOK
	case cmd == "-h" || cmd == "--help" || cmd == "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "kpoguard: unknown command %q\n\n%s", strings.Join(args, " "), usage)
		return exitBadInput
	}
}
