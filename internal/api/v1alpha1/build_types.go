package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Forge names the code host a Build came from.
// +kubebuilder:validation:Enum=github;gitlab
type Forge string

const (
	ForgeGitHub Forge = "github"
	ForgeGitLab Forge = "gitlab"
)

// Event is what triggered a Build. Supersede and fork policies depend on it.
// +kubebuilder:validation:Enum=push;tag;pull_request;merge_request;rerun;manual
type Event string

const (
	EventPush         Event = "push"
	EventTag          Event = "tag"
	EventPullRequest  Event = "pull_request"
	EventMergeRequest Event = "merge_request"
	EventRerun        Event = "rerun"
	EventManual       Event = "manual"
)

// Phase is a Build's place in its lifecycle. Terminal phases never change again: a retry is a
// new Build.
// +kubebuilder:validation:Enum=Queued;Pending;Running;Succeeded;Failed;Canceled
type Phase string

const (
	PhaseQueued    Phase = "Queued"
	PhasePending   Phase = "Pending"
	PhaseRunning   Phase = "Running"
	PhaseSucceeded Phase = "Succeeded"
	PhaseFailed    Phase = "Failed"
	PhaseCanceled  Phase = "Canceled"
)

// Terminal reports whether no further transition may happen.
func (p Phase) Terminal() bool {
	return p == PhaseSucceeded || p == PhaseFailed || p == PhaseCanceled
}

// Labels Slipway sets on Builds and their pods, so both can be selected with kubectl.
const (
	LabelCommitShort = "slipway.dev/commit-short"
	LabelForge       = "slipway.dev/forge"
	LabelEvent       = "slipway.dev/event"
	LabelTarget      = "slipway.dev/target"
)

// Annotations that carry a Build from intake through config resolution.
const (
	// AnnotationTargets marks a trigger: a Build recorded by intake before the repository's
	// .slipway.yaml was read. The controller reads it, creates one Build per matching target
	// (named <trigger>-<target>) and deletes the trigger. The value is "*" for every target, or
	// one target's name (a re-run of one check run).
	AnnotationTargets = "slipway.dev/targets"
	// AnnotationBefore is the commit a push moved the branch from, for paths filters.
	AnnotationBefore = "slipway.dev/before"
	// AnnotationConfigRef is where a resolved Build's config was read: the commit, or for a
	// fork the base branch.
	AnnotationConfigRef = "slipway.dev/config-ref"
	// AnnotationPush is "false" when the repository's config forbids pushing (a fork under
	// forkPolicy build-no-push) and "true" when it allows a fork to push; absent, forks do not
	// push and everything else does.
	AnnotationPush = "slipway.dev/push"
)

// IsTrigger reports whether b still waits for its targets to be read from the repository.
func (b *Build) IsTrigger() bool {
	_, ok := b.Annotations[AnnotationTargets]
	return ok
}

// Pushes reports whether b's image is pushed.
func (b *Build) Pushes() bool {
	switch b.Annotations[AnnotationPush] {
	case "false":
		return false
	case "true":
		return true
	}
	return !b.Spec.Source.Fork
}

// Build asks for one image to be built from one commit.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=slipway
// +kubebuilder:printcolumn:name="Repo",type=string,JSONPath=`.spec.source.repository`
// +kubebuilder:printcolumn:name="Ref",type=string,JSONPath=`.spec.source.ref`
// +kubebuilder:printcolumn:name="SHA",type=string,JSONPath=`.metadata.labels.slipway\.dev/commit-short`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Digest",type=string,JSONPath=`.status.shortDigest`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Build struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable; create a new Build instead"
	Spec   BuildSpec   `json:"spec"`
	Status BuildStatus `json:"status,omitempty"`
}

// BuildSpec is everything needed to build, fixed at creation.
type BuildSpec struct {
	Source Source `json:"source"`
	// +optional
	Trigger Trigger `json:"trigger,omitempty"`
	Target  Target  `json:"target"`
}

// Source says which commit to build and where it came from.
//
// +kubebuilder:validation:XValidation:rule="!(self.event in ['pull_request', 'merge_request']) || (has(self.number) && self.number > 0)",message="number is required for pull_request and merge_request events"
// +kubebuilder:validation:XValidation:rule="self.forge == 'gitlab' || self.event != 'merge_request'",message="merge_request events come only from gitlab"
// +kubebuilder:validation:XValidation:rule="self.forge == 'github' || self.event != 'pull_request'",message="pull_request events come only from github"
type Source struct {
	Forge Forge `json:"forge"`
	// Host is the forge's host name, e.g. github.com or gitlab.example.com.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9.-]+(:[0-9]+)?$`
	Host string `json:"host"`
	// Repository is GitHub's owner/name or GitLab's full project path (group/subgroup/project).
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$`
	Repository string `json:"repository"`
	// CloneURL is the HTTPS URL the builder fetches from.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') || self.startsWith('http://')",message="cloneURL must be an http(s) URL"
	CloneURL string `json:"cloneURL"`
	// Commit is the full 40-hex SHA of the commit to build: never a branch name, so a build is
	// reproducible whatever happens to the branch afterwards.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{40}$`
	Commit string `json:"commit"`
	// Ref is the full git ref that carried the commit: refs/heads/..., refs/tags/...,
	// refs/pull/N/head or refs/merge-requests/N/head.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^refs/(heads|tags|pull|merge-requests)/[^\s~^:?*\[\\]+$`
	Ref   string `json:"ref"`
	Event Event  `json:"event"`
	// BaseRef is the branch a pull or merge request targets. Fork builds read their config there.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	BaseRef string `json:"baseRef,omitempty"`
	// DefaultBranch of the repository, the second place to look for registry cache.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	DefaultBranch string `json:"defaultBranch,omitempty"`
	// Number of the pull or merge request.
	// +optional
	// +kubebuilder:validation:Minimum=1
	Number int64 `json:"number,omitempty"`
	// Fork is true when the head of a pull or merge request lives in another repository; such
	// builds get no push credentials by default.
	// +optional
	Fork bool `json:"fork,omitempty"`
	// InstallationID is the GitHub App installation that delivered the event.
	// +optional
	// +kubebuilder:validation:Minimum=1
	InstallationID int64 `json:"installationID,omitempty"`
	// ProjectID is the GitLab project that is built (the merge request's target project).
	// +optional
	// +kubebuilder:validation:Minimum=1
	ProjectID int64 `json:"projectID,omitempty"`
	// SourceProjectID is the GitLab project the merge request comes from; GitLab shows commit
	// statuses of that project on the merge request.
	// +optional
	// +kubebuilder:validation:Minimum=1
	SourceProjectID int64 `json:"sourceProjectID,omitempty"`
}

// Trigger records who and what asked for the Build, for audit and dedupe.
type Trigger struct {
	// DeliveryID is the forge's delivery ID (X-GitHub-Delivery, GitLab's webhook-id), or a hash
	// of the body when the forge sent none. The Build's name derives from it.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DeliveryID string `json:"deliveryID,omitempty"`
	// Sender is the forge user whose action triggered the Build.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Sender string `json:"sender,omitempty"`
	// ReceivedAt is when intake received the webhook.
	// +optional
	ReceivedAt *metav1.Time `json:"receivedAt,omitempty"`
}

// Target is one image to build from the commit.
type Target struct {
	// Name identifies the target in status contexts (slipway/<name>) and in the Build's name.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=30
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// Context is the build context directory, relative to the repository root.
	// +kubebuilder:default="."
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && self != '..' && !self.startsWith('../') && !self.endsWith('/..') && !self.contains('/../')",message="context must stay inside the repository"
	Context string `json:"context,omitempty"`
	// Dockerfile is the path of the Dockerfile, relative to the repository root.
	// +kubebuilder:default=Dockerfile
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && self != '..' && !self.startsWith('../') && !self.endsWith('/..') && !self.contains('/../')",message="dockerfile must stay inside the repository"
	Dockerfile string `json:"dockerfile,omitempty"`
	// Stage is the Dockerfile stage to build (--target); empty means the last one.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Stage string `json:"stage,omitempty"`
	// Image is the repository to push to, without tag. Empty means the controller derives it
	// from its registry prefix and the source repository.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`
	// Tags are tag templates ({sha}, {short_sha}, {branch}, {tag}) expanded by the controller.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	Tags []string `json:"tags,omitempty"`
	// BuildArgs are passed as Dockerfile ARGs. Secrets never go here: build args end up in the
	// image history.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=name
	BuildArgs []BuildArg `json:"buildArgs,omitempty"`
	// Platforms to build for, e.g. linux/amd64.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +listType=set
	Platforms []string `json:"platforms,omitempty"`
	// Timeout bounds the build from its start (not from when it was queued).
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// BuildArg is one Dockerfile ARG.
type BuildArg struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value"`
}

// BuildStatus is what happened to the Build so far. The controller owns it, except Reports,
// which the reporter owns.
type BuildStatus struct {
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// Reason is a machine-readable cause for the current phase; Failed always carries one
	// (BuildFailed, SourceFailed, PushFailed, DaemonUnavailable, ImagePullFailed, Unschedulable,
	// DeadlineExceeded, PodLost, ConfigInvalid, OOMKilled).
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message explains Reason to a person.
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// PodName is the build pod; it equals the Build's name.
	// +optional
	PodName string `json:"podName,omitempty"`
	// Digest is the pushed image's manifest digest.
	// +optional
	Digest string `json:"digest,omitempty"`
	// ShortDigest is Digest's first 12 hex digits, for kubectl's table.
	// +optional
	ShortDigest string `json:"shortDigest,omitempty"`
	// Tags are the image references that were pushed.
	// +optional
	Tags []string `json:"tags,omitempty"`
	// StartTime is when the build started (the builder container ran).
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime is when the Build reached a terminal phase.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Timings are per-phase durations (queued, scheduled, imagePull, daemon, fetch, solve, push,
	// cacheExport), derived from recorded timestamps rather than measured twice.
	// +optional
	Timings map[string]metav1.Duration `json:"timings,omitempty"`
	// Steps counts Dockerfile steps, and how many came from cache.
	// +optional
	Steps *Steps `json:"steps,omitempty"`
	// SupersededBy names the newer Build that canceled this one.
	// +optional
	SupersededBy string `json:"supersededBy,omitempty"`
	// Transitions records when each phase was entered; timings derive from these rather than
	// being measured twice.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Transitions []Transition `json:"transitions,omitempty"`
	// Failure details the failing step when the builder reported one.
	// +optional
	Failure *Failure `json:"failure,omitempty"`
	// Reports records the last state reported to each forge context, so no state is sent twice.
	// +optional
	// +listType=map
	// +listMapKey=context
	Reports []Report `json:"reports,omitempty"`
	// ObservedGeneration is the generation the controller last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// Steps counts Dockerfile steps.
type Steps struct {
	Total  int32 `json:"total"`
	Cached int32 `json:"cached"`
}

// Transition is the entry into one phase.
type Transition struct {
	Phase Phase       `json:"phase"`
	Time  metav1.Time `json:"time"`
}

// Failure locates a failed build step.
type Failure struct {
	// +optional
	Step string `json:"step,omitempty"`
	// Line in the Dockerfile, when BuildKit reports one.
	// +optional
	Line int32 `json:"line,omitempty"`
	// +optional
	ExitCode int32 `json:"exitCode,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// Report is the last state sent to one forge context (a commit status context or a check run).
type Report struct {
	// Context is e.g. "github-status/slipway/default" or "github-check/slipway/default".
	Context string `json:"context"`
	// State is the forge-side state that was sent.
	State string `json:"state"`
	// ExternalID is the forge's ID for the reported object (a check run ID), if any.
	// +optional
	ExternalID string `json:"externalID,omitempty"`
	// Time is when the report was accepted by the forge.
	Time metav1.Time `json:"time"`
}

// BuildList is a list of Builds.
//
// +kubebuilder:object:root=true
type BuildList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Build `json:"items"`
}
