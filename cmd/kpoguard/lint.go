package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/kpoguard/kpoguard/policy"
)

// lint validates a policy file: exit 0 valid, 2 invalid or unreadable.
func lint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kpoguard policy lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("p", "", "policy file (required)")
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: kpoguard policy lint -p POLICY_FILE")
		return exitBadInput
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "kpoguard: %v\n", err)
		return exitBadInput
	}
	p, err := policy.Load(data)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *file, err)
		return exitBadInput
	}
	fmt.Fprintf(stdout, "%s: valid policy %q (hash %s)\n", *file, p.Name(), p.Hash())
	for _, w := range p.Warnings() {
		fmt.Fprintf(stdout, "%s: warning: %s\n", *file, w)
	}
	return exitOK
}
