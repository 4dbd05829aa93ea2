package controller

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-dev/slipway/internal/api/v1alpha1"
	"github.com/slipway-dev/slipway/internal/buildresult"
	"github.com/slipway-dev/slipway/internal/podspec"
)

// Failure reasons the controller itself decides (the builder's outcomes add BuildFailed,
// SourceFailed, PushFailed, DaemonUnavailable, ConfigInvalid).
const (
	ReasonImagePullFailed  = "ImagePullFailed"
	ReasonUnschedulable    = "Unschedulable"
	ReasonDeadlineExceeded = "DeadlineExceeded"
	ReasonPodLost          = "PodLost"
	ReasonOOMKilled        = "OOMKilled"
	ReasonSuperseded       = "Superseded"
	ReasonStopped          = "Stopped"
)

// Waits bound how long a pod may stay stuck before the Build fails with a reason a person can
// act on, instead of hanging until the deadline.
type Waits struct {
	ImagePull     time.Duration
	Unschedulable time.Duration
}

// Observation is what a pod says about its Build. Zero Phase means "no change".
type Observation struct {
	Phase   v1alpha1.Phase
	Reason  string
	Message string
	// BuilderStarted is when the builder container started, if it has.
	BuilderStarted *metav1.Time
	Finished       *metav1.Time
	Result         *buildresult.Result
	// DeletePod asks the controller to remove a pod that will never make progress.
	DeletePod bool
	// RecheckAfter asks for another look when a bounded wait would expire.
	RecheckAfter time.Duration
	// Timings the pod reveals: schedule, imagePull (scheduled → daemon started), daemonStart
	// (daemon started → builder started, i.e. until BuildKit's startup probe passed).
	Timings map[string]time.Duration
}

// ObservePod maps a build pod's status to the Build's phase. It is a pure function of the pod
// and the clock, which is what makes every failure mode testable without a kubelet.
func ObservePod(pod *corev1.Pod, now time.Time, w Waits) Observation {
	o := Observation{Timings: podTimings(pod)}
	builder := containerStatus(pod.Status.ContainerStatuses, podspec.BuilderName)
	if builder != nil && builder.State.Running != nil {
		o.BuilderStarted = &builder.State.Running.StartedAt
	}
	if builder != nil && builder.State.Terminated != nil {
		return finished(o, pod, builder.State.Terminated)
	}
	switch pod.Status.Phase {
	case corev1.PodFailed:
		o.Phase, o.Finished = v1alpha1.PhaseFailed, metaNow(now)
		switch pod.Status.Reason {
		case "DeadlineExceeded":
			o.Reason, o.Message = ReasonDeadlineExceeded, "the build exceeded its timeout"
		default:
			o.Reason, o.Message = ReasonPodLost, describe("the build pod failed", pod.Status.Reason, pod.Status.Message)
		}
		return o
	case corev1.PodSucceeded:
		// Succeeded without a builder status should not happen; do not claim success without
		// the builder's own word.
		o.Phase, o.Finished = v1alpha1.PhaseFailed, metaNow(now)
		o.Reason, o.Message = ReasonPodLost, "the pod succeeded but the builder's status is missing"
		return o
	case corev1.PodUnknown:
		o.Phase, o.Finished = v1alpha1.PhaseFailed, metaNow(now)
		o.Reason, o.Message = ReasonPodLost, describe("the node running the build pod stopped reporting", pod.Status.Reason, pod.Status.Message)
		return o
	}
	if o.BuilderStarted != nil {
		o.Phase = v1alpha1.PhaseRunning
		return o
	}
	// Still pending: check the bounded waits.
	if c := podCondition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
		waited := now.Sub(c.LastTransitionTime.Time)
		if waited >= w.Unschedulable {
			o.Phase, o.Reason, o.Finished, o.DeletePod = v1alpha1.PhaseFailed, ReasonUnschedulable, metaNow(now), true
			o.Message = describe("no node can run the build pod", "", c.Message)
			return o
		}
		o.RecheckAfter = w.Unschedulable - waited
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		wt := cs.State.Waiting
		if wt == nil {
			continue
		}
		switch wt.Reason {
		case "InvalidImageName", "ErrImageNeverPull":
			o.Phase, o.Reason, o.Finished, o.DeletePod = v1alpha1.PhaseFailed, ReasonImagePullFailed, metaNow(now), true
			o.Message = describe("image "+cs.Image+" cannot be pulled", wt.Reason, wt.Message)
			return o
		case "ErrImagePull", "ImagePullBackOff":
			since := pod.CreationTimestamp.Time
			if c := podCondition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionTrue {
				since = c.LastTransitionTime.Time
			}
			waited := now.Sub(since)
			if waited >= w.ImagePull {
				o.Phase, o.Reason, o.Finished, o.DeletePod = v1alpha1.PhaseFailed, ReasonImagePullFailed, metaNow(now), true
				o.Message = describe("image "+cs.Image+" could not be pulled", wt.Reason, wt.Message)
				return o
			}
			o.RecheckAfter = w.ImagePull - waited
		}
	}
	o.Phase = v1alpha1.PhasePending
	return o
}

// finished reads the builder's result from its termination message; the exit code is the
// fallback when the message is missing (e.g. the container was OOM-killed before writing it).
func finished(o Observation, pod *corev1.Pod, t *corev1.ContainerStateTerminated) Observation {
	o.Finished = &t.FinishedAt
	if o.BuilderStarted == nil && !t.StartedAt.IsZero() {
		o.BuilderStarted = &t.StartedAt
	}
	res, err := buildresult.Decode([]byte(t.Message))
	if err == nil {
		o.Result = &res
	}
	switch {
	case t.Reason == "OOMKilled":
		o.Phase, o.Reason, o.Message = v1alpha1.PhaseFailed, ReasonOOMKilled, "the builder ran out of memory; raise its memory limit"
		return o
	case t.ExitCode == 0 && o.Result != nil && o.Result.Outcome == buildresult.Succeeded:
		o.Phase = v1alpha1.PhaseSucceeded
		return o
	}
	outcome := buildresult.Outcome("")
	if o.Result != nil {
		outcome = o.Result.Outcome
	} else if oc, ok := buildresult.OutcomeForExitCode(int(t.ExitCode)); ok {
		outcome = oc
	}
	switch outcome {
	case buildresult.Canceled:
		// We cancel by changing the Build first; a builder canceled behind our back means the
		// pod was stopped by someone else.
		o.Phase, o.Reason, o.Message = v1alpha1.PhaseCanceled, ReasonStopped, "the build pod was stopped before the build finished"
	case buildresult.BuildFailed, buildresult.SourceFailed, buildresult.PushFailed, buildresult.DaemonUnavailable, buildresult.ConfigInvalid:
		o.Phase, o.Reason = v1alpha1.PhaseFailed, string(outcome)
		o.Message = failureMessage(o.Result, outcome)
	case buildresult.Succeeded:
		// Exit 0 without a readable result, or a success result with a failing exit code: the
		// contract was broken, so do not claim an image exists.
		o.Phase, o.Reason = v1alpha1.PhaseFailed, string(buildresult.BuildFailed)
		o.Message = fmt.Sprintf("the builder exited %d without a consistent result", t.ExitCode)
	default:
		o.Phase, o.Reason = v1alpha1.PhaseFailed, string(buildresult.BuildFailed)
		o.Message = describe(fmt.Sprintf("the builder exited %d", t.ExitCode), t.Reason, "")
	}
	return o
}

func failureMessage(r *buildresult.Result, outcome buildresult.Outcome) string {
	if r != nil && r.Failure != nil && r.Failure.Message != "" {
		return r.Failure.Message
	}
	return fmt.Sprintf("the builder reported %s", outcome)
}

func podTimings(pod *corev1.Pod) map[string]time.Duration {
	t := map[string]time.Duration{}
	created := pod.CreationTimestamp.Time
	var scheduled, daemon, builder time.Time
	if c := podCondition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionTrue {
		scheduled = c.LastTransitionTime.Time
	}
	if cs := containerStatus(pod.Status.InitContainerStatuses, podspec.BuildKitName); cs != nil {
		daemon = startedAt(cs)
	}
	if cs := containerStatus(pod.Status.ContainerStatuses, podspec.BuilderName); cs != nil {
		builder = startedAt(cs)
	}
	put := func(k string, from, to time.Time) {
		if !from.IsZero() && !to.IsZero() && !to.Before(from) {
			t[k] = to.Sub(from)
		}
	}
	put("schedule", created, scheduled)
	put("imagePull", scheduled, daemon)
	put("daemonStart", daemon, builder)
	return t
}

func startedAt(cs *corev1.ContainerStatus) time.Time {
	switch {
	case cs.State.Running != nil:
		return cs.State.Running.StartedAt.Time
	case cs.State.Terminated != nil:
		return cs.State.Terminated.StartedAt.Time
	}
	return time.Time{}
}

func containerStatus(list []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func describe(what, reason, msg string) string {
	parts := []string{what}
	if reason != "" {
		parts = append(parts, reason)
	}
	if msg != "" {
		parts = append(parts, msg)
	}
	s := strings.Join(parts, ": ")
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}

func metaNow(now time.Time) *metav1.Time {
	t := metav1.NewTime(now)
	return &t
}
