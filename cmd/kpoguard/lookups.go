package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/go-logr/logr"

	"github.com/kpoguard/kpoguard/registry"
	"github.com/kpoguard/kpoguard/review"
	"github.com/kpoguard/kpoguard/webhook"
)

// lookupFlags are the image-lookup flags of the commands that review pods
// outside the webhook (check, audit): the registries as the policy says,
// with the user's Docker credentials in place of pull secrets.
type lookupFlags struct {
	offline bool
	caFile  string
	verbose bool
}

func (l *lookupFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&l.offline, "offline", false, "do not look images up in their registries")
	fs.StringVar(&l.caFile, "registry-ca-file", "", "PEM file of CAs trusted for registries, besides the system's")
	fs.BoolVar(&l.verbose, "v", false, "print each failed lookup's details (the registry's answer) to standard error")
}

// logger receives each failed lookup's details: on stderr with -v, else
// nowhere.
func (l lookupFlags) logger(stderr io.Writer) logr.Logger {
	if !l.verbose {
		return logr.Discard()
	}
	return logr.FromSlogHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.Level(-1)}))
}

// images is the image resolver of a command (its name goes into the
// registries' User-Agent), or nil with --offline.
func (l lookupFlags) images(command string, log logr.Logger) (review.ImageResolver, error) {
	if l.offline {
		return nil, nil
	}
	opts := registry.ClientOptions{UserAgent: "kpoguard-" + command + "/" + version}
	if l.caFile != "" {
		var err error
		if opts.RootCAs, err = certPool(l.caFile); err != nil {
			return nil, fmt.Errorf("--registry-ca-file: %w", err)
		}
	}
	onPanic := webhook.LookupPanics(nil, log)
	return &webhook.RegistryImages{
		Cache:     registry.NewCache(registry.NewClient(opts), registry.CacheOptions{OnPanic: onPanic}),
		Keychains: dockerCredentials{},
		Log:       log,
		OnPanic:   onPanic,
	}, nil
}
