// Command celguard compiles and evaluates a ValidatingAdmissionPolicy the way a Kubernetes apiserver does, with
// k8s.io/apiserver's own CEL environment and admission plugin code. It exists for the tests only: the local
// apiserver the test suite runs predates ValidatingAdmissionPolicy, and a Python CEL interpreter neither enforces
// Kubernetes' language settings (homogeneous aggregate literals, the library set of each version) nor evaluates
// with its cost limits.
//
// Usage: celguard check < input.json > output.json
//
// Input:  {"policy": <ValidatingAdmissionPolicy as JSON>, "requests": [<request>, ...]}
// request: {"operation", "resource": {"group","version","resource"}, "subResource", "namespace", "name",
//
//	"user", "groups", "object", "oldObject"} (object/oldObject null or absent where the operation has none)
//
// Output: {"compile": [{"field", "mode", "detail"}...], "reviews": [{"matched", "refusals": [...], "errors": [...]}]}
//
// "compile" lists what the apiserver would refuse when the policy is created (every expression compiled in the
// environment for new expressions, with and without strict cost enforcement) or what it could not compile when
// loading it (stored expressions). A review is only made when nothing failed to compile, since the apiserver then
// applies failurePolicy to everything, which would hide which rule decided.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

type input struct {
	Policy   json.RawMessage `json:"policy"`
	Requests []request       `json:"requests"`
}

type request struct {
	Operation   string                      `json:"operation"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Namespace   string                      `json:"namespace"`
	Name        string                      `json:"name"`
	User        string                      `json:"user"`
	Groups      []string                    `json:"groups"`
	Object      map[string]interface{}      `json:"object"`
	OldObject   map[string]interface{}      `json:"oldObject"`
}

type compileError struct {
	Field  string `json:"field"`
	Mode   string `json:"mode"`
	Detail string `json:"detail"`
}

type review struct {
	Matched  bool     `json:"matched"`
	Refusals []string `json:"refusals"`
	Errors   []string `json:"errors"`
}

type output struct {
	Compile []compileError `json:"compile"`
	Reviews []review       `json:"reviews"`
}

func main() {
	if len(os.Args) != 2 || os.Args[1] != "check" {
		fmt.Fprintln(os.Stderr, "usage: celguard check < input.json")
		os.Exit(2)
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		fail(fmt.Errorf("input: %w", err))
	}
	policy, err := decodePolicy(in.Policy)
	if err != nil {
		fail(err)
	}
	out := output{Compile: compileForCreate(policy), Reviews: []review{}}
	if len(out.Compile) == 0 {
		validator := runtimeValidator(policy)
		for i, r := range in.Requests {
			decided, err := evaluate(validator, r)
			if err != nil {
				fail(fmt.Errorf("request %d: %w", i, err))
			}
			out.Reviews = append(out.Reviews, decided)
		}
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", " ")
	if err := encoder.Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "celguard:", err)
	os.Exit(1)
}

// decodePolicy refuses unknown fields, as the apiserver's strict field validation would.
func decodePolicy(raw json.RawMessage) (*admissionregistrationv1.ValidatingAdmissionPolicy, error) {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	if err := decoder.Decode(policy); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return policy, nil
}

// compileForCreate compiles every expression as the apiserver's validation does when the policy is created (or an
// expression in it changed): the base environment at the default compatibility version, "new expressions" mode.
// Strict cost enforcement is a feature gate (off by default in 1.30, on from 1.31), so both settings are tried.
// Stored-expression mode is what the admission plugin then compiles with at run time.
func compileForCreate(policy *admissionregistrationv1.ValidatingAdmissionPolicy) []compileError {
	var errs []compileError
	spec := policy.Spec
	hasParams := spec.ParamKind != nil
	for _, strict := range []bool{false, true} {
		for _, mode := range []environment.Type{environment.NewExpressions, environment.StoredExpressions} {
			label := fmt.Sprintf("%s, strictCost=%t", mode, strict)
			envSet := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion(), strict)
			decls := plugincel.OptionalVariableDeclarations{HasParams: hasParams, HasAuthorizer: true, StrictCost: strict}
			add := func(field string, err *apiservercel.Error) {
				// CompilationResult.Error is a pointer: compared here, before it becomes a non-nil error interface.
				if err != nil {
					errs = append(errs, compileError{Field: field, Mode: label, Detail: err.Error()})
				}
			}
			stateless := plugincel.NewCompiler(envSet)
			for i, c := range spec.MatchConditions {
				condition := matchconditions.MatchCondition(c)
				result := stateless.CompileCELExpression(&condition, decls, mode)
				add(fmt.Sprintf("spec.matchConditions[%d] (%s)", i, c.Name), result.Error)
			}
			compiler, err := plugincel.NewCompositedCompiler(envSet)
			if err != nil {
				fail(err)
			}
			for i, v := range spec.Variables {
				result := compiler.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, decls, mode)
				add(fmt.Sprintf("spec.variables[%d] (%s)", i, v.Name), result.Error)
			}
			for i, v := range spec.Validations {
				result := compiler.CompileCELExpression(&validating.ValidationCondition{Expression: v.Expression}, decls, mode)
				add(fmt.Sprintf("spec.validations[%d]", i), result.Error)
				if v.MessageExpression != "" {
					messageDecls := plugincel.OptionalVariableDeclarations{HasParams: hasParams, StrictCost: strict}
					message := &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
					add(fmt.Sprintf("spec.validations[%d].messageExpression", i), compiler.CompileCELExpression(message, messageDecls, mode).Error)
				}
				// The apiserver's validation refuses these too; they are not CEL, but they fail the create all the same.
				if strings.ContainsAny(strings.TrimSpace(v.Message), "\n") {
					errs = append(errs, compileError{Field: fmt.Sprintf("spec.validations[%d].message", i), Mode: label, Detail: "message must not contain line breaks"})
				}
			}
		}
	}
	return errs
}

// runtimeValidator is the policy as the admission plugin loads it: stored-expression mode, variables composed
// into every expression, match conditions in front, failurePolicy applied to errors.
func runtimeValidator(policy *admissionregistrationv1.ValidatingAdmissionPolicy) validating.Validator {
	spec := policy.Spec
	decls := plugincel.OptionalVariableDeclarations{HasParams: spec.ParamKind != nil, HasAuthorizer: true, StrictCost: true}
	messageDecls := plugincel.OptionalVariableDeclarations{HasParams: spec.ParamKind != nil, StrictCost: true}
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion(), true))
	if err != nil {
		fail(err)
	}
	variables := make([]plugincel.NamedExpressionAccessor, len(spec.Variables))
	for i, v := range spec.Variables {
		variables[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
	}
	compiler.CompileAndStoreVariables(variables, decls, environment.StoredExpressions)
	var matcher matchconditions.Matcher
	if len(spec.MatchConditions) > 0 {
		conditions := make([]plugincel.ExpressionAccessor, len(spec.MatchConditions))
		for i := range spec.MatchConditions {
			conditions[i] = (*matchconditions.MatchCondition)(&spec.MatchConditions[i])
		}
		matcher = matchconditions.NewMatcher(compiler.Compile(conditions, decls, environment.StoredExpressions), spec.FailurePolicy, "policy", "validate", policy.Name)
	}
	validations := make([]plugincel.ExpressionAccessor, len(spec.Validations))
	messages := make([]plugincel.ExpressionAccessor, len(spec.Validations))
	for i, v := range spec.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message, Reason: v.Reason}
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
		}
	}
	return validating.NewValidator(
		compiler.Compile(validations, decls, environment.StoredExpressions),
		matcher,
		compiler.Compile(nil, decls, environment.StoredExpressions),
		compiler.Compile(messages, messageDecls, environment.StoredExpressions),
		spec.FailurePolicy,
	)
}

func toObject(m map[string]interface{}) runtime.Object {
	if m == nil {
		return nil // an untyped nil: the plugin gives CEL null for a missing object
	}
	return &unstructured.Unstructured{Object: m}
}

func kindOf(objects ...map[string]interface{}) schema.GroupVersionKind {
	for _, m := range objects {
		if m != nil {
			u := unstructured.Unstructured{Object: m}
			return u.GroupVersionKind()
		}
	}
	return schema.GroupVersionKind{}
}

// evaluate runs one request through the validator the way the admission plugin does for a matched request.
func evaluate(validator validating.Validator, r request) (review, error) {
	gvr := schema.GroupVersionResource{Group: r.Resource.Group, Version: r.Resource.Version, Resource: r.Resource.Resource}
	gvk := kindOf(r.Object, r.OldObject)
	var info user.Info
	if r.User != "" {
		info = &user.DefaultInfo{Name: r.User, Groups: r.Groups}
	} else {
		info = &user.DefaultInfo{Groups: r.Groups}
	}
	obj, old := toObject(r.Object), toObject(r.OldObject)
	attributes := admission.NewAttributesRecord(
		obj, old, gvk, r.Namespace, r.Name, gvr, r.SubResource, admission.Operation(r.Operation), nil, false, info,
	)
	versioned := &admission.VersionedAttributes{
		Attributes: attributes, VersionedKind: gvk, VersionedObject: obj, VersionedOldObject: old,
	}
	var namespace *corev1.Namespace
	if r.Namespace != "" {
		namespace = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Namespace}}
	}
	result := validator.Validate(context.Background(), gvr, versioned, nil, namespace, celconfig.RuntimeCELCostBudget, nil)
	out := review{Matched: len(result.Decisions) > 0, Refusals: []string{}, Errors: []string{}}
	for _, d := range result.Decisions {
		if d.Action != validating.ActionDeny {
			continue
		}
		if d.Evaluation == validating.EvalError {
			out.Errors = append(out.Errors, d.Message)
		} else {
			out.Refusals = append(out.Refusals, d.Message)
		}
	}
	return out, nil
}
