package submit

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
)

// Create creates b, or adopts the existing Build of the same name (a retried step): the name
// derives from the run, so AlreadyExists means "this job's build".
func Create(ctx context.Context, c client.Client, b *v1alpha1.Build) (created bool, err error) {
	err = c.Create(ctx, b)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsAlreadyExists(err):
		return false, c.Get(ctx, client.ObjectKeyFromObject(b), b)
	}
	return false, fmt.Errorf("creating build %s: %w", b.Name, err)
}

// Follow watches the Build until it is terminal, calling seen for every new phase. It returns
// the final Build; ctx bounds the wait.
func Follow(ctx context.Context, c client.WithWatch, key client.ObjectKey, seen func(*v1alpha1.Build)) (*v1alpha1.Build, error) {
	var last v1alpha1.Phase = "-"
	for {
		var b v1alpha1.Build
		if err := c.Get(ctx, key, &b); err != nil {
			return nil, fmt.Errorf("getting build %s: %w", key.Name, err)
		}
		if b.Status.Phase != last {
			last = b.Status.Phase
			seen(&b)
		}
		if b.Status.Phase.Terminal() {
			return &b, nil
		}
		// Watch from the version just read, so no update between the read and the watch is lost.
		w, err := c.Watch(ctx, &v1alpha1.BuildList{}, client.InNamespace(key.Namespace),
			client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", key.Name)},
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: b.ResourceVersion}})
		if err != nil {
			return nil, fmt.Errorf("watching build %s: %w", key.Name, err)
		}
		done, err := drain(ctx, w, &last, seen)
		w.Stop()
		if done != nil || err != nil {
			return done, err
		}
		// The watch ended (server timeout): read again and resume.
	}
}

func drain(ctx context.Context, w watch.Interface, last *v1alpha1.Phase, seen func(*v1alpha1.Build)) (*v1alpha1.Build, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the build: %w", ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, nil
			}
			b, isBuild := ev.Object.(*v1alpha1.Build)
			if !isBuild {
				continue
			}
			if ev.Type == watch.Deleted {
				return nil, fmt.Errorf("build %s was deleted", b.Name)
			}
			if b.Status.Phase != *last {
				*last = b.Status.Phase
				seen(b)
			}
			if b.Status.Phase.Terminal() {
				return b, nil
			}
		}
	}
}

// Outputs are the step outputs of a finished Build.
func Outputs(b *v1alpha1.Build) map[string]string {
	o := map[string]string{
		"build":  b.Name,
		"phase":  string(b.Status.Phase),
		"reason": b.Status.Reason,
		"digest": b.Status.Digest,
	}
	if b.Status.Digest != "" && len(b.Status.Tags) > 0 {
		repo := b.Status.Tags[0]
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		o["image"] = repo + "@" + b.Status.Digest
	}
	return o
}

// WriteOutputs appends outputs in the $GITHUB_OUTPUT format. Values are single-line by
// construction; a newline would let a value forge another output, so it is refused.
func WriteOutputs(path string, o map[string]string) error {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		if strings.ContainsAny(o[k], "\r\n") {
			return fmt.Errorf("output %s contains a newline", k)
		}
		fmt.Fprintf(&sb, "%s=%s\n", k, o[k])
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("opening GITHUB_OUTPUT: %w", err)
	}
	if _, err := io.WriteString(f, sb.String()); err != nil {
		f.Close()
		return fmt.Errorf("writing GITHUB_OUTPUT: %w", err)
	}
	return f.Close()
}
