package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/procyon-dev/procyon/durable"
)

func init() {
	register(command{path: "backup", usage: "[-force] DIR FILE",
		summary: "write a consistent backup of the durable store in DIR to FILE (- for stdout), opening DIR read-only; refuses an existing FILE unless -force, and a DIR that is not a store (exit 2)",
		define:  backupCmd, args: 2})
	register(command{path: "restore", usage: "FILE DIR",
		summary: "check a backup (FILE, - for stdin) and make it the state of a new durable store in DIR, which must be empty",
		define:  restoreCmd, args: 2})
}

func backupCmd(fs *flag.FlagSet) runFunc {
	force := fs.Bool("force", false, "overwrite FILE if it exists")
	return func(ctx context.Context, e *env, args []string) error {
		dir, file := args[0], args[1]
		if file != "-" && !*force {
			if _, err := os.Lstat(file); err == nil {
				return fmt.Errorf("%s exists; use -force to overwrite it", file)
			}
		}
		// Collections are not known here: keep them all as opaque bytes; the
		// backup carries them unchanged. Read-only: nothing in DIR changes.
		s := durable.New(durable.Options{Dir: dir, Logger: slog.New(slog.DiscardHandler),
			UnknownCollections: durable.KeepUnknown, ReadOnly: true})
		if err := s.Open(ctx); err != nil {
			return notStore(err)
		}
		defer s.Close()
		var w io.Writer = e.stdout
		var f *os.File
		if file != "-" {
			var err error
			// Write next to the target and rename, so that FILE is never a
			// partial backup.
			f, err = os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".tmp*")
			if err != nil {
				return err
			}
			defer os.Remove(f.Name())
			defer f.Close()
			w = f
		}
		res, err := s.Backup(ctx, w)
		if err != nil {
			return err
		}
		if f != nil {
			if err := f.Sync(); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := os.Rename(f.Name(), file); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "backup of %s at seq %d: %d collections (%v), %d bytes, written to %s\n",
				dir, res.Seq, res.Collections, s.Collections(), res.Bytes, file)
		}
		return nil
	}
}

func restoreCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env, args []string) error {
		file, dir := args[0], args[1]
		var r io.Reader = os.Stdin
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		res, err := durable.Restore(ctx, r, dir, durable.RestoreOptions{})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "restored %s into %s: backup of seq %d, %d collections %v, %d entries, %d bytes\n",
			file, dir, res.SourceSeq, len(res.Collections), res.Collections, res.Entries, res.Bytes)
		return nil
	}
}
