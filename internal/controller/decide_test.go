package controller

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/buildresult"
	"github.com/slipway-dev/slipway/internal/podspec"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func mk(name, repo, ref string, ev v1alpha1.Event, created int, phase v1alpha1.Phase) v1alpha1.Build {
	return v1alpha1.Build{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name), CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(created) * time.Second))},
		Spec: v1alpha1.BuildSpec{
			Source: v1alpha1.Source{Forge: "github", Host: "github.com", Repository: repo, Ref: ref, Event: ev},
			Target: v1alpha1.Target{Name: "default"},
		},
		Status: v1alpha1.BuildStatus{Phase: phase},
	}
}

func TestAdmit(t *testing.T) {
	q, p, r := v1alpha1.PhaseQueued, v1alpha1.PhasePending, v1alpha1.PhaseRunning
	all := []v1alpha1.Build{
		mk("run1", "a", "refs/heads/x", "push", 0, r),
		mk("q1", "a", "refs/heads/y", "push", 1, q),
		mk("q2", "b", "refs/heads/y", "push", 2, q),
		mk("q3", "c", "refs/heads/y", "push", 3, q),
		mk("done", "c", "refs/heads/z", "push", 0, v1alpha1.PhaseSucceeded),
	}
	for _, tc := range []struct {
		limits Limits
		admit  map[string]bool
	}{
		{Limits{}, map[string]bool{"q1": true, "q2": true, "q3": true}},
		{Limits{MaxRunning: 2}, map[string]bool{"q1": true, "q2": false, "q3": false}},
		{Limits{MaxRunning: 3}, map[string]bool{"q1": true, "q2": true, "q3": false}},
		// q1's repo is full, so it does not hold up q2 and q3.
		{Limits{MaxRunning: 3, MaxRunningPerRepo: 1}, map[string]bool{"q1": false, "q2": true, "q3": true}},
		{Limits{MaxRunning: 2, MaxRunningPerRepo: 1}, map[string]bool{"q1": false, "q2": true, "q3": false}},
	} {
		for name, want := range tc.admit {
			var me *v1alpha1.Build
			for i := range all {
				if all[i].Name == name {
					me = &all[i]
				}
			}
			if got := Admit(me, all, tc.limits); got != want {
				t.Errorf("limits %+v: Admit(%s) = %v, want %v", tc.limits, name, got, want)
			}
		}
	}
	// Pending counts as holding a slot.
	pend := []v1alpha1.Build{mk("p", "a", "r", "push", 0, p), mk("q", "b", "r", "push", 1, q)}
	if Admit(&pend[1], pend, Limits{MaxRunning: 1}) {
		t.Error("a Pending build does not hold its slot")
	}
}

func TestSupersededBy(t *testing.T) {
	old := mk("old", "a", "refs/heads/main", "push", 0, v1alpha1.PhaseRunning)
	newer1 := mk("new1", "a", "refs/heads/main", "push", 5, v1alpha1.PhaseQueued)
	newer2 := mk("new2", "a", "refs/heads/main", "push", 9, v1alpha1.PhaseQueued)
	otherRef := mk("other", "a", "refs/heads/dev", "push", 9, v1alpha1.PhaseQueued)
	peers := []v1alpha1.Build{old, newer1, newer2, otherRef}
	if by := SupersededBy(&old, peers, DefaultSupersede()); by == nil || by.Name != "new2" {
		t.Fatalf("superseded by %v, want new2", by)
	}
	if by := SupersededBy(&newer2, peers, DefaultSupersede()); by != nil {
		t.Fatalf("the newest is superseded by %s", by.Name)
	}
	tag := mk("t", "a", "refs/tags/v1", "tag", 0, v1alpha1.PhaseRunning)
	tag2 := mk("t2", "a", "refs/tags/v1", "tag", 5, v1alpha1.PhaseQueued)
	if SupersededBy(&tag, []v1alpha1.Build{tag, tag2}, DefaultSupersede()) != nil {
		t.Fatal("tags are superseded by default")
	}
	off := DefaultSupersede()
	off.Repos = map[string]bool{"a": false}
	if SupersededBy(&old, peers, off) != nil {
		t.Fatal("per-repo override ignored")
	}
	done := old
	done.Status.Phase = v1alpha1.PhaseSucceeded
	if SupersededBy(&done, peers, DefaultSupersede()) != nil {
		t.Fatal("a finished build was superseded")
	}
	sameSecond := []v1alpha1.Build{mk("a-1", "a", "refs/heads/main", "push", 0, v1alpha1.PhaseQueued), mk("a-2", "a", "refs/heads/main", "push", 0, v1alpha1.PhaseQueued)}
	if by := SupersededBy(&sameSecond[0], sameSecond, DefaultSupersede()); by == nil || by.Name != "a-2" {
		t.Fatal("ties are not broken by name")
	}
}

func TestPrunable(t *testing.T) {
	var all []v1alpha1.Build
	for i := range 5 {
		all = append(all, mk(fmt.Sprintf("d%d", i), "a", "r", "push", i, v1alpha1.PhaseSucceeded))
	}
	all = append(all, mk("running", "a", "r", "push", -1, v1alpha1.PhaseRunning), mk("other", "b", "r", "push", -1, v1alpha1.PhaseFailed))
	got := Prunable(all, "a", 3)
	if len(got) != 2 || got[0].Name != "d0" || got[1].Name != "d1" {
		t.Fatalf("Prunable = %v", names(got))
	}
}

func names(bs []v1alpha1.Build) []string {
	var n []string
	for _, b := range bs {
		n = append(n, b.Name)
	}
	return n
}

func TestObservePod(t *testing.T) {
	w := Waits{ImagePull: 2 * time.Minute, Unschedulable: 5 * time.Minute}
	pod := func(mut func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(t0)}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
		mut(p)
		return p
	}
	backoff := func(reason string, scheduledAt time.Time) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(scheduledAt)}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: podspec.BuildKitName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}
		}
	}
	term := func(exit int32, reason, msg string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: podspec.BuilderName, State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Reason: reason, Message: msg, StartedAt: metav1.NewTime(t0), FinishedAt: metav1.NewTime(t0.Add(time.Minute))}}}}
		}
	}
	okMsg, _ := buildresult.Encode(buildresult.Result{Outcome: buildresult.Succeeded, Digest: "sha256:ab"})
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		now    time.Time
		phase  v1alpha1.Phase
		reason string
		del    bool
	}{
		{"just created", pod(func(*corev1.Pod) {}), t0, v1alpha1.PhasePending, "", false},
		{"pulling, within bound", pod(backoff("ImagePullBackOff", t0)), t0.Add(time.Minute), v1alpha1.PhasePending, "", false},
		{"pulling, past bound", pod(backoff("ErrImagePull", t0)), t0.Add(3 * time.Minute), v1alpha1.PhaseFailed, ReasonImagePullFailed, true},
		{"invalid image name", pod(backoff("InvalidImageName", t0)), t0, v1alpha1.PhaseFailed, ReasonImagePullFailed, true},
		{"succeeded", pod(func(p *corev1.Pod) { term(0, "Completed", string(okMsg))(p); p.Status.Phase = corev1.PodSucceeded }), t0, v1alpha1.PhaseSucceeded, "", false},
		{"exit 0 without a result is not success", pod(term(0, "Completed", "")), t0, v1alpha1.PhaseFailed, string(buildresult.BuildFailed), false},
		{"garbage termination message, exit code fallback", pod(term(buildresult.ExitSourceFailed, "Error", "{{{")), t0, v1alpha1.PhaseFailed, string(buildresult.SourceFailed), false},
		{"daemon never came", pod(term(buildresult.ExitDaemonUnavailable, "Error", "")), t0, v1alpha1.PhaseFailed, string(buildresult.DaemonUnavailable), false},
		{"oom", pod(term(137, "OOMKilled", "")), t0, v1alpha1.PhaseFailed, ReasonOOMKilled, false},
		{"evicted", pod(func(p *corev1.Pod) { p.Status.Phase, p.Status.Reason = corev1.PodFailed, "Evicted" }), t0, v1alpha1.PhaseFailed, ReasonPodLost, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ObservePod(tc.pod, tc.now, w)
			if o.Phase != tc.phase || o.Reason != tc.reason || o.DeletePod != tc.del {
				t.Fatalf("got phase %q reason %q delete %v (%s)", o.Phase, o.Reason, o.DeletePod, o.Message)
			}
			if tc.name == "pulling, within bound" && o.RecheckAfter != time.Minute {
				t.Fatalf("recheck after %v, want when the bound expires", o.RecheckAfter)
			}
		})
	}
}

func TestSettingsFor(t *testing.T) {
	defaults := podspec.Settings{Shape: podspec.ShapeRootless, NodeSelector: map[string]string{"pool": "old"}}
	pools := []Pool{
		{Name: "userns", Shape: podspec.ShapeUserNamespace, NodeSelector: map[string]string{"pool": "new"}, Repos: []string{"acme/*"}},
		{Name: "gpu", Shape: podspec.ShapeRootless, NodeSelector: map[string]string{"pool": "gpu"}, Repos: []string{"ml/trainer"}},
	}
	for repo, want := range map[string]string{"acme/web": "userns", "ml/trainer": "gpu", "other/x": "", "acme/web/sub": ""} {
		b := mk("b", repo, "refs/heads/main", "push", 0, "")
		s, pool := SettingsFor(&b, defaults, pools)
		if pool != want {
			t.Errorf("%s → pool %q, want %q", repo, pool, want)
		}
		if want == "userns" && (s.Shape != podspec.ShapeUserNamespace || s.NodeSelector["pool"] != "new") {
			t.Errorf("%s: settings %+v", repo, s)
		}
		if want == "" && (s.Shape != podspec.ShapeRootless || s.NodeSelector["pool"] != "old") {
			t.Errorf("%s: defaults not kept: %+v", repo, s)
		}
	}
	b := mk("b", "any/repo", "r", "push", 0, "")
	if _, pool := SettingsFor(&b, defaults, []Pool{{Name: "all", Shape: podspec.ShapeUserNamespace}}); pool != "all" {
		t.Error("a pool without repos matches every repository")
	}
}
