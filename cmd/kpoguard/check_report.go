package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kpoguard/kpoguard/policy"
	"github.com/kpoguard/kpoguard/review"
)

// podReport is what check prints for one pod: the review the webhooks
// would give it.
type podReport struct {
	Source           string             `json:"source"`
	Namespace        string             `json:"namespace"`
	Name             string             `json:"name"`
	Decision         review.Decision    `json:"decision"`
	Skipped          string             `json:"skipped,omitempty"`
	Note             string             `json:"note,omitempty"`
	Changes          []policy.Change    `json:"changes,omitempty"`
	Violations       []policy.Violation `json:"violations,omitempty"`
	Message          string             `json:"message,omitempty"`
	Warnings         []string           `json:"warnings,omitempty"`
	AuditAnnotations map[string]string  `json:"auditAnnotations,omitempty"`
	Patch            json.RawMessage    `json:"patch,omitempty"`
	Images           []imageReport      `json:"images,omitempty"`

	pod *corev1.Pod
}

// imageReport is what a registry said of one image.
type imageReport struct {
	Image     string   `json:"image"`
	Platforms []string `json:"platforms,omitempty"`
	Error     string   `json:"error,omitempty"`
	Trusted   bool     `json:"trusted,omitempty"`
}

// imageReports lists every image of the pod with what its registry said;
// one not looked up was trusted by name.
func imageReports(pod *corev1.Pod, facts map[string]policy.ImageFacts) []imageReport {
	var out []imageReport
	for _, image := range policy.Images(pod) {
		f, looked := facts[image]
		r := imageReport{Image: image, Trusted: !looked}
		r.Error = f.Err
		for _, p := range f.Platforms {
			r.Platforms = append(r.Platforms, p.String())
		}
		out = append(out, r)
	}
	return out
}

func printReports(w io.Writer, output string, reports []podReport) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	case "patch":
		for _, r := range reports {
			fmt.Fprintf(w, "# %s/%s (%s)\n%s\n", r.Namespace, r.Name, r.Source, orEmptyPatch(r.Patch))
		}
		return nil
	case "yaml":
		for i, r := range reports {
			out, err := yaml.Marshal(r.pod)
			if err != nil {
				return err
			}
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			fmt.Fprintf(w, "# %s: %s\n%s", r.Source, r.Decision, out)
		}
		return nil
	}
	for _, r := range reports {
		printText(w, r)
	}
	return nil
}

func orEmptyPatch(p json.RawMessage) string {
	if len(p) == 0 || string(p) == "null" {
		return "[]"
	}
	return string(p)
}

func printText(w io.Writer, r podReport) {
	fmt.Fprintf(w, "pod %s/%s (%s): %s", r.Namespace, r.Name, r.Source, r.Decision)
	if r.Skipped != "" {
		fmt.Fprintf(w, ", not checked: %s\n", r.Skipped)
		return
	}
	fmt.Fprintln(w)
	if r.Note != "" {
		fmt.Fprintf(w, "  note: %s\n", r.Note)
	}
	for _, img := range r.Images {
		switch {
		case img.Trusted:
			fmt.Fprintf(w, "  image %s: trusted, not looked up\n", img.Image)
		case img.Error != "":
			fmt.Fprintf(w, "  image %s: lookup failed: %s\n", img.Image, img.Error)
		default:
			fmt.Fprintf(w, "  image %s: %s\n", img.Image, strings.Join(img.Platforms, ", "))
		}
	}
	// Warn-mode findings read as the kubectl warnings the webhooks send.
	for _, c := range r.Changes {
		switch c.Mode {
		case policy.Enforce:
			fmt.Fprintf(w, "  set [%s] %s=%s\n", c.Rule, c.Path, c.Value)
		case policy.Audit:
			fmt.Fprintf(w, "  audit: would set [%s] %s=%s\n", c.Rule, c.Path, c.Value)
		}
	}
	for _, v := range r.Violations {
		switch v.Mode {
		case policy.Enforce:
			fmt.Fprintf(w, "  denied %s\n", v)
		case policy.Audit:
			fmt.Fprintf(w, "  audit: %s\n", v)
		}
	}
	for _, warning := range r.Warnings {
		fmt.Fprintf(w, "  Warning: %s\n", warning)
	}
}
