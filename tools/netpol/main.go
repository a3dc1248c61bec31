// Command rsr-netpol is the local test node's NetworkPolicy dataplane (a test-time component, never shipped).
//
// Policy semantics are Kubernetes SIG Network's own: kube-network-policies' policy engine and its evaluators, wired as
// its cmd/kube-network-policies/npa-v1alpha2 command does: the Admin tier of SIG Network's ClusterNetworkPolicy
// (sigs.k8s.io/network-policy-api, policy.networking.k8s.io/v1alpha2), then standard NetworkPolicy, then the Baseline
// tier, fed by informers on Namespaces, Pods, Nodes, NetworkPolicies and ClusterNetworkPolicies. An apiserver that does
// not serve ClusterNetworkPolicy (no CRD installed, e.g. RSR_KUBE=1.20) gets the NetworkPolicy evaluator alone (found
// by discovery at start). Only the packet path is ours, because the
// project's machines run a kernel without nft_queue (CONFIG_NFT_QUEUE is not set, so kube-network-policies' own
// nftables `queue` rule cannot be created) and without NETFILTER_NETLINK_GLUE_CT (so a queue verdict cannot mark a
// connection). The packet path here uses what that kernel has:
//
//   - tools/node/netpol.py installs the rules (iptables-nft, table `ip filter`, chain RSR-NETPOL hooked from FORWARD):
//     a packet carrying the allow mark sets the connection's mark and is accepted; an ESTABLISHED/RELATED packet of a
//     connection carrying that mark is accepted; anything else is queued here (xt NFQUEUE, bypassed when no one
//     listens, as kube-network-policies' --fail-open does).
//   - A queued packet is evaluated by the policy engine: allowed, it is re-injected (NF_REPEAT) with the allow mark on
//     the packet, so the rules mark its connection; denied, it is dropped.
//   - --strict-mode=true (kube-network-policies' default, Cilium's behaviour): whenever a policy (NetworkPolicy or
//     ClusterNetworkPolicy), pod or namespace changes, every marked connection is evaluated again in its original direction and the ones no longer allowed are
//     deleted from conntrack, so their next packet is queued and dropped. --strict-mode=false (Calico's behaviour):
//     policy is checked only when a connection is set up, and established connections keep flowing.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"sigs.k8s.io/kube-network-policies/pkg/api"
	"sigs.k8s.io/kube-network-policies/pkg/dataplane"
	"sigs.k8s.io/kube-network-policies/pkg/network"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"
	"sigs.k8s.io/kube-network-policies/pkg/podinfo"
	cnp "sigs.k8s.io/kube-network-policies/plugins/npa-v1alpha2"
	npav1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	npainformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"
)

type options struct {
	kubeconfig string
	nodeName   string
	metrics    string
	strict     bool
	queueID    uint
	mark       uint
}

// counters served on /metrics (plain text, Prometheus exposition format).
var (
	accepted atomic.Uint64
	dropped  atomic.Uint64
	cut      atomic.Uint64
	sweeps   atomic.Uint64
	ready    atomic.Bool
	tiers    atomic.Bool // ClusterNetworkPolicy (Admin and Baseline tiers) enforced
)

func main() {
	klog.InitFlags(nil)
	o := options{}
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the dataplane's own identity")
	flag.StringVar(&o.nodeName, "hostname-override", "", "the node's name")
	flag.StringVar(&o.metrics, "metrics-bind-address", "127.0.0.1:9080", "where /metrics and /healthz are served (loopback)")
	flag.BoolVar(&o.strict, "strict-mode", true, "policy changes also cut established connections")
	flag.UintVar(&o.queueID, "nfqueue-id", 100, "the NFQUEUE number the rules send packets to")
	flag.UintVar(&o.mark, "allow-mark", 0x100, "packet/connection mark bit meaning 'allowed'")
	flag.Parse()
	if err := run(o); err != nil {
		klog.Errorf("rsr-netpol: %v", err)
		os.Exit(1)
	}
}

func run(o options) error {
	host, _, err := net.SplitHostPort(o.metrics)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return fmt.Errorf("--metrics-bind-address must be a loopback address and port, got %q", o.metrics)
	}
	if o.kubeconfig == "" || o.nodeName == "" {
		return fmt.Errorf("--kubeconfig and --hostname-override are required")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(clientset, 0)
	nsInformer := factory.Core().V1().Namespaces()
	npInformer := factory.Networking().V1().NetworkPolicies()
	podInformer := factory.Core().V1().Pods()
	nodeInformer := factory.Core().V1().Nodes()
	if err := podInformer.Informer().SetTransform(func(obj interface{}) (interface{}, error) {
		if accessor, err := meta.Accessor(obj); err == nil {
			accessor.SetManagedFields(nil)
		}
		return obj, nil
	}); err != nil {
		return err
	}
	resolver, err := podinfo.NewInformerResolver(podInformer.Informer())
	if err != nil {
		return err
	}
	provider := podinfo.NewInformerProvider(podInformer, nsInformer, nodeInformer, []podinfo.IPResolver{resolver})
	standard := networkpolicy.NewStandardNetworkPolicy(o.nodeName, nsInformer, podInformer, npInformer)
	evaluators := []api.PolicyEvaluator{standard}

	// A policy, pod or namespace changed: in strict mode, sweep the established connections at once (coalesced: one
	// pending request is enough, since a sweep reads the latest state).
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}

	// ClusterNetworkPolicy, when the apiserver serves it: the Admin tier before NetworkPolicy, the Baseline tier after,
	// from one informer on a client of its own (a CRD speaks JSON only). No domain resolver: `domainNames` peers match
	// nothing here (the node resolves no names anyway).
	var npaFactory npainformers.SharedInformerFactory
	served, err := servesClusterNetworkPolicy(clientset)
	if err != nil {
		return err
	}
	if served {
		npa, err := npaclient.NewForConfig(rest.CopyConfig(cfg))
		if err != nil {
			return err
		}
		npaFactory = npainformers.NewSharedInformerFactory(npa, 0)
		cnpInformer := npaFactory.Policy().V1alpha2().ClusterNetworkPolicies()
		evaluators = []api.PolicyEvaluator{
			cnp.NewClusterNetworkPolicy(npav1alpha2.AdminTier, cnpInformer, nil, nodeInformer.Lister()),
			standard,
			cnp.NewClusterNetworkPolicy(npav1alpha2.BaselineTier, cnpInformer, nil, nodeInformer.Lister()),
		}
		// The plugin's SetDataplaneSyncCallback is a no-op (kube-network-policies v1.1.1): a ClusterNetworkPolicy
		// change must trigger the strict-mode sweep too, so the informer signals it directly.
		if _, err := cnpInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(interface{}) { poke() },
			UpdateFunc: func(interface{}, interface{}) { poke() },
			DeleteFunc: func(interface{}) { poke() },
		}); err != nil {
			return err
		}
		tiers.Store(true)
	}
	engine := networkpolicy.NewPolicyEngine(provider, evaluators)
	engine.SetDataplaneSyncCallbacks(poke)

	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	if npaFactory != nil {
		npaFactory.Start(ctx.Done())
		for typ, ok := range npaFactory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("informer for %v did not sync", typ)
			}
		}
	}
	if !engine.Ready() {
		return fmt.Errorf("policy evaluators not ready after their informers synced")
	}

	go serveMetrics(ctx, o)

	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      uint16(o.queueID),
		MaxPacketLen: 128, // headers are all the engine reads
		MaxQueueLen:  1024,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        nfqueue.NfQaCfgFlagFailOpen,
		WriteTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		return fmt.Errorf("opening nfqueue %d: %w", o.queueID, err)
	}
	defer nf.Close()

	mark := uint32(o.mark)
	verdict := func(a nfqueue.Attribute) int {
		packet, err := network.ParsePacket(*a.Payload)
		allowed := true // what cannot be parsed is not a pod's TCP/UDP/SCTP flow: let it pass, as fail-open does
		if err == nil {
			allowed, err = engine.EvaluatePacket(ctx, &packet)
			if err != nil {
				klog.V(2).InfoS("evaluation failed, dropping", "packet", packet.MarshalLog(), "err", err)
				allowed = false
			}
		}
		if allowed {
			accepted.Add(1)
			// Re-injected at the top of the hook with the allow mark: the rules mark the connection and accept it.
			if err := nf.SetVerdictWithOption(*a.PacketID, nfqueue.NfRepeat, nfqueue.WithMark(mark)); err != nil {
				klog.ErrorS(err, "verdict")
			}
			return 0
		}
		dropped.Add(1)
		klog.V(1).InfoS("dropped", "packet", packet.MarshalLog())
		if err := nf.SetVerdict(*a.PacketID, nfqueue.NfDrop); err != nil {
			klog.ErrorS(err, "verdict")
		}
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, verdict, func(err error) int {
		klog.V(2).InfoS("nfqueue receive", "err", err)
		return 0
	}); err != nil {
		return fmt.Errorf("registering on nfqueue %d: %w", o.queueID, err)
	}
	ready.Store(true)
	klog.InfoS("rsr-netpol ready", "node", o.nodeName, "strict", o.strict, "queue", o.queueID,
		"clusterNetworkPolicy", tiers.Load())

	if !o.strict {
		<-ctx.Done()
		return nil
	}
	// Strict mode: sweep on every change, and every 10 s as a safety net (an event missed is a session left alive).
	ticker := time.NewTicker(10 * time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-ticker.C:
		}
		sweep(ctx, engine, mark)
	}
}

// servesClusterNetworkPolicy: whether the apiserver serves policy.networking.k8s.io/v1alpha2 clusternetworkpolicies
// (kube-up installs the CRD, Established, before the dataplane starts; RSR_KUBE=1.20's cluster has none).
func servesClusterNetworkPolicy(clientset kubernetes.Interface) (bool, error) {
	resources, err := clientset.Discovery().ServerResourcesForGroupVersion(npav1alpha2.GroupVersion.String())
	if err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("discovering %s: %w", npav1alpha2.GroupVersion, err)
	}
	for _, r := range resources.APIResources {
		if r.Name == "clusternetworkpolicies" {
			return true, nil
		}
	}
	return false, nil
}

// stale matches the marked (allowed) connections that the current policies no longer allow, judged in their original
// direction, as a new connection would be.
type stale struct {
	ctx    context.Context
	engine *networkpolicy.PolicyEngine
	mark   uint32
}

func (s stale) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Mark&s.mark == 0 {
		return false
	}
	switch flow.Forward.Protocol {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP:
	default:
		return false
	}
	packet := dataplane.PacketFromFlow(flow)
	if packet == nil {
		return false
	}
	allowed, err := s.engine.EvaluatePacket(s.ctx, packet)
	if err != nil {
		klog.V(2).InfoS("evaluating an established flow failed; cutting it", "flow", flow.String(), "err", err)
		return true
	}
	if !allowed {
		klog.InfoS("cutting an established connection no longer allowed", "flow", flow.String())
	}
	return !allowed
}

func sweep(ctx context.Context, engine *networkpolicy.PolicyEngine, mark uint32) {
	sweeps.Add(1)
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, stale{ctx, engine, mark})
	if err != nil {
		klog.ErrorS(err, "sweeping conntrack")
	}
	cut.Add(uint64(n))
}

func serveMetrics(ctx context.Context, o options) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		strict := 0
		if o.strict {
			strict = 1
		}
		fmt.Fprintf(w, "rsr_netpol_strict_mode %d\n", strict)
		clusterTiers := 0
		if tiers.Load() {
			clusterTiers = 1
		}
		fmt.Fprintf(w, "rsr_netpol_cluster_network_policy %d\n", clusterTiers)
		fmt.Fprintf(w, "rsr_netpol_packets_total{verdict=\"accept\"} %d\n", accepted.Load())
		fmt.Fprintf(w, "rsr_netpol_packets_total{verdict=\"drop\"} %d\n", dropped.Load())
		fmt.Fprintf(w, "rsr_netpol_connections_cut_total %d\n", cut.Load())
		fmt.Fprintf(w, "rsr_netpol_sweeps_total %d\n", sweeps.Load())
	})
	srv := &http.Server{Addr: o.metrics, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		klog.ErrorS(err, "metrics server")
	}
}
