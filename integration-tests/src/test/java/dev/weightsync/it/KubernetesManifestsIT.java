package dev.weightsync.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.weightsync.server.Sidecar;
import dev.weightsync.server.config.ConfigLoader;
import dev.weightsync.server.config.RelayTarget;
import dev.weightsync.server.config.Role;
import dev.weightsync.server.config.SidecarConfig;
import dev.weightsync.server.pipeline.VersionCoordinator;
import dev.weightsync.server.quant.Quantizers;
import dev.weightsync.server.quant.cuda.CudaQuantizer;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.PodResourceClaim;
import io.fabric8.kubernetes.api.model.PodSpec;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.ResourceClaim;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServicePort;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import io.fabric8.kubernetes.api.model.resource.v1.ExactDeviceRequest;
import io.fabric8.kubernetes.api.model.resource.v1.ResourceClaimTemplate;
import io.fabric8.kubernetes.client.utils.KubernetesSerialization;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The overlays as {@code kubectl kustomize} renders them, parsed into typed Kubernetes objects,
 * with their cross-references checked against the server itself: ports and probes against its
 * defaults and health service, the ConfigMap through its real config loader, Services, selectors
 * and network policies against the pods they name.
 */
class KubernetesManifestsIT {

  private static final String NAMESPACE = "rl";
  @TempDir Path tmp;

  /** A rendered overlay. */
  private record Rendered(List<HasMetadata> objects) {
    <T extends HasMetadata> List<T> all(Class<T> type) {
      return objects.stream().filter(type::isInstance).map(type::cast).toList();
    }

    <T extends HasMetadata> T named(Class<T> type, String name) {
      return all(type).stream().filter(o -> o.getMetadata().getName().equals(name)).findFirst()
          .orElseThrow(() -> new AssertionError("no " + type.getSimpleName() + " " + name));
    }
  }

  private static Rendered render(String overlay) throws Exception {
    Tools.require(Tools.KUBECTL, Files.isExecutable(Path.of("/usr/bin/kubectl"))
            || Launcher.run(List.of("sh", "-c", "command -v kubectl"), 10).exitCode() == 0,
        "kubectl (with kustomize) is not installed: it is no Debian package; install it from"
            + " the Kubernetes project's releases to render the overlays (this machine image has it)");
    Launcher.Result r = Launcher.run(List.of("kubectl", "kustomize",
        Launcher.root().resolve("k8s/overlays/" + overlay).toString()), 60);
    assertThat(r.exitCode()).as(r.stderr()).isZero();
    KubernetesSerialization k8s = new KubernetesSerialization();
    List<HasMetadata> objects = new ArrayList<>();
    for (String doc : r.stdout().split("(?m)^---$")) {
      if (!doc.isBlank()) {
        objects.add(k8s.unmarshal(doc));
      }
    }
    for (HasMetadata o : objects) {
      boolean custom = o.getKind().equals("ServiceMonitor"); // a CRD: no typed class here
      assertThat(o instanceof GenericKubernetesResource).as(o.getKind() + " parses as a typed object")
          .isEqualTo(custom);
    }
    return new Rendered(objects);
  }

  private static Container sidecar(PodSpec pod) {
    Container c = pod.getInitContainers().stream().filter(x -> x.getName().equals("weightsync"))
        .findFirst().orElseThrow(() -> new AssertionError("no weightsync native sidecar"));
    assertThat(c.getRestartPolicy()).as("a native sidecar").isEqualTo("Always");
    return c;
  }

  private static int port(Container c, String name) {
    return c.getPorts().stream().filter(p -> name.equals(p.getName()))
        .mapToInt(ContainerPort::getContainerPort).findFirst()
        .orElseThrow(() -> new AssertionError(c.getName() + " has no port " + name));
  }

  /** The container's environment as the kubelet gives it ($(VAR) expanded, the namespace filled). */
  private static Map<String, String> env(Container c) {
    Map<String, String> env = new HashMap<>();
    for (EnvVar e : c.getEnv()) {
      String v = e.getValue();
      if (e.getValueFrom() != null) {
        assertThat(e.getValueFrom().getFieldRef().getFieldPath()).isEqualTo("metadata.namespace");
        v = NAMESPACE;
      }
      Matcher m = Pattern.compile("\\$\\((\\w+)\\)").matcher(v);
      StringBuilder b = new StringBuilder();
      while (m.find()) {
        m.appendReplacement(b, Matcher.quoteReplacement(env.getOrDefault(m.group(1), m.group())));
      }
      m.appendTail(b);
      env.put(e.getName(), b.toString());
    }
    return env;
  }

  /**
   * Checks the sidecar of {@code pod} against the server: ports, probes, and its config (the
   * ConfigMap file through the real loader, with the container's environment) and mounts.
   */
  private SidecarConfig checkSidecar(Rendered r, PodSpec pod) throws Exception {
    Container c = sidecar(pod);
    SidecarConfig defaults = ConfigLoader.load(null, Map.of(), Map.of());
    assertThat(port(c, "grpc")).isEqualTo(defaults.port());
    assertThat(port(c, "metrics")).isEqualTo(defaults.metricsPort());
    assertThat(c.getLivenessProbe().getGrpc().getPort()).isEqualTo(defaults.port());
    assertThat(c.getLivenessProbe().getGrpc().getService()).isEmpty();
    assertThat(c.getStartupProbe().getGrpc().getPort()).isEqualTo(defaults.port());
    assertThat(c.getReadinessProbe().getGrpc().getPort()).isEqualTo(defaults.port());
    assertThat(c.getReadinessProbe().getGrpc().getService()).isEqualTo(Sidecar.SERVICE);

    assertThat(c.getArgs()).startsWith("serve", "--config");
    Path inPod = Path.of(c.getArgs().get(2));
    VolumeMount configMount = mount(c, inPod.getParent().toString());
    Volume configVolume = volume(pod, configMount.getName());
    ConfigMap cm = r.named(ConfigMap.class, configVolume.getConfigMap().getName());
    Path file = tmp.resolve(inPod.getFileName());
    Files.writeString(file, cm.getData().get(inPod.getFileName().toString()));
    SidecarConfig config = ConfigLoader.load(file, env(c), Map.of());
    // Kubernetes waits for the whole shutdown: the grace, then the leases' resumes
    assertThat(pod.getTerminationGracePeriodSeconds()).as("terminationGracePeriodSeconds")
        .isGreaterThan(config.shutdownGrace().toSeconds()
            + VersionCoordinator.ABANDONED_SESSION_BOUND_SECONDS);
    assertThat(config.port()).isEqualTo(port(c, "grpc"));
    assertThat(config.metricsPort()).isEqualTo(port(c, "metrics"));
    mount(c, config.stagingDir().toString());
    assertThat(volume(pod, mount(c, config.authTokenFile().getParent().toString()).getName())
        .getSecret().getSecretName()).isEqualTo("weightsync-tokens");
    assertThat(c.getSecurityContext().getRunAsNonRoot()).isTrue();
    assertThat(c.getSecurityContext().getReadOnlyRootFilesystem()).isTrue();
    mount(c, "/tmp"); // the JVM and Netty need a writable /tmp under a read-only root
    // The commented TLS keys, switched on, are valid and point into the TLS Secret's mount.
    Files.writeString(file, cm.getData().get(inPod.getFileName().toString())
        .replaceAll("(?m)^# ((relay-)?tls-[a-z-]+: )", "$1"));
    SidecarConfig tls = ConfigLoader.load(file, env(c), Map.of());
    assertThat(tls.tlsCert()).isNotNull();
    for (Path f : List.of(tls.tlsCert(), tls.tlsKey(), tls.tlsClientCa(), tls.relayTlsCa())) {
      assertThat(volume(pod, mount(c, f.getParent().toString()).getName()).getSecret()
          .getSecretName()).isEqualTo("weightsync-tls");
    }
    return config;
  }

  private static VolumeMount mount(Container c, String path) {
    return c.getVolumeMounts().stream().filter(m -> m.getMountPath().equals(path)).findFirst()
        .orElseThrow(() -> new AssertionError(c.getName() + " mounts nothing at " + path));
  }

  private static Volume volume(PodSpec pod, String name) {
    return pod.getVolumes().stream().filter(v -> v.getName().equals(name)).findFirst()
        .orElseThrow(() -> new AssertionError("no volume " + name));
  }

  private static boolean selects(Map<String, String> selector, Map<String, String> labels) {
    return labels.entrySet().containsAll(selector.entrySet());
  }

  /** Services, ServiceMonitor, NetworkPolicies: every name they use exists where they point. */
  private static void checkReferences(Rendered r) {
    List<Deployment> deployments = r.all(Deployment.class);
    for (Service s : r.all(Service.class)) {
      List<Deployment> backs = deployments.stream().filter(d -> selects(s.getSpec().getSelector(),
          d.getSpec().getTemplate().getMetadata().getLabels())).toList();
      assertThat(backs).as("pods behind Service " + s.getMetadata().getName()).isNotEmpty();
      for (ServicePort p : s.getSpec().getPorts()) {
        String target = p.getTargetPort().getStrVal();
        assertThat(backs).as(s.getMetadata().getName() + " port " + target).allMatch(d ->
            allContainers(d.getSpec().getTemplate().getSpec()).stream()
                .anyMatch(c -> c.getPorts().stream().anyMatch(cp -> target.equals(cp.getName()))));
      }
    }
    GenericKubernetesResource monitor = r.all(GenericKubernetesResource.class).stream()
        .filter(o -> o.getKind().equals("ServiceMonitor")).findFirst().orElseThrow();
    @SuppressWarnings("unchecked")
    Map<String, String> match = (Map<String, String>) monitor.get("spec", "selector", "matchLabels");
    String endpointPort = monitor.get("spec", "endpoints", 0, "port");
    List<Service> scraped = r.all(Service.class).stream()
        .filter(s -> selects(match, s.getMetadata().getLabels())).toList();
    assertThat(scraped).as("Services the ServiceMonitor selects").isNotEmpty()
        .allMatch(s -> s.getSpec().getPorts().stream().anyMatch(p -> endpointPort.equals(p.getName())));
    for (NetworkPolicy np : r.all(NetworkPolicy.class)) {
      List<Deployment> guarded = deployments.stream().filter(d -> selects(
          np.getSpec().getPodSelector().getMatchLabels(),
          d.getSpec().getTemplate().getMetadata().getLabels())).toList();
      assertThat(guarded).as("pods of NetworkPolicy " + np.getMetadata().getName()).isNotEmpty();
      np.getSpec().getIngress().forEach(rule -> rule.getPorts().forEach(p ->
          assertThat(guarded).allMatch(d -> allContainers(d.getSpec().getTemplate().getSpec())
              .stream().anyMatch(c -> c.getPorts().stream()
                  .anyMatch(cp -> p.getPort().getStrVal().equals(cp.getName()))))));
    }
  }

  private static List<Container> allContainers(PodSpec pod) {
    List<Container> all = new ArrayList<>(pod.getContainers());
    all.addAll(pod.getInitContainers());
    return all;
  }

  @Test
  void colocated() throws Exception {
    Rendered r = render("colocated");
    PodSpec trainer = r.named(Deployment.class, "trainer").getSpec().getTemplate().getSpec();
    SidecarConfig config = checkSidecar(r, trainer);
    assertThat(config.role()).isEqualTo(Role.BOTH);
    // It drives the engine on its own node, which reads the same host staging path.
    Service local = r.named(Service.class, "sglang-local");
    assertThat(local.getSpec().getInternalTrafficPolicy()).isEqualTo("Local");
    assertThat(config.sglangUrls()).containsExactly("http://sglang-local:"
        + local.getSpec().getPorts().get(0).getPort());
    PodSpec sglang = r.named(Deployment.class, "sglang").getSpec().getTemplate().getSpec();
    String hostPath = volume(trainer, mount(sidecar(trainer), config.stagingDir().toString())
        .getName()).getHostPath().getPath();
    Container engine = sglang.getContainers().get(0);
    assertThat(volume(sglang, mount(engine, config.stagingDir().toString()).getName())
        .getHostPath().getPath()).isEqualTo(hostPath);
    assertThat(sglang.getAffinity().getPodAffinity()
        .getRequiredDuringSchedulingIgnoredDuringExecution().get(0).getTopologyKey())
        .isEqualTo("kubernetes.io/hostname");
    checkReferences(r);
    checkDashboard(r);
  }

  @Test
  void colocatedCudaGivesTheSidecarTheTrainersGpusForCudaIpc() throws Exception {
    Rendered r = render("colocated-cuda");
    PodSpec trainer = r.named(Deployment.class, "trainer").getSpec().getTemplate().getSpec();
    SidecarConfig config = checkSidecar(r, trainer);
    assertThat(config.role()).isEqualTo(Role.BOTH);
    assertThat(config.device()).as("every GPU of the claim, each rank's buckets on their own;"
        + " no GPU stops the sidecar at start").isEqualTo("cuda:all");
    assertThat(config.stagingReuse()).as("push_cuda stages into kept pages").isTrue();
    // The driver opens a CUDA IPC handle only in a process whose PID differs from the exporter's:
    // one PID namespace for the pod. Its containers share the IPC namespace already.
    assertThat(trainer.getShareProcessNamespace()).isTrue();
    assertThat(trainer.getHostIPC()).isNotEqualTo(Boolean.TRUE);
    assertThat(trainer.getHostPID()).isNotEqualTo(Boolean.TRUE);
    // Both containers hold the pod's one GPU claim, so they see the same devices.
    PodResourceClaim claim = trainer.getResourceClaims().get(0);
    assertThat(trainer.getResourceClaims()).hasSize(1);
    Container trainerContainer = trainer.getContainers().stream()
        .filter(c -> c.getName().equals("trainer")).findFirst().orElseThrow();
    for (Container c : List.of(sidecar(trainer), trainerContainer)) {
      assertThat(c.getResources().getClaims()).extracting(ResourceClaim::getName)
          .as(c.getName() + "'s claims").containsExactly(claim.getName());
    }
    ExactDeviceRequest gpus = r.named(ResourceClaimTemplate.class,
        claim.getResourceClaimTemplateName()).getSpec().getSpec().getDevices().getRequests()
        .get(0).getExactly();
    assertThat(gpus.getDeviceClassName()).isEqualTo("gpu.nvidia.com");
    assertThat(gpus.getCount()).isPositive();
    // Nothing in the pod asks the device plugin, which would give each container other GPUs.
    for (Container c : allContainers(trainer)) {
      Map<String, Quantity> limits = c.getResources() == null || c.getResources().getLimits() == null
          ? Map.of() : c.getResources().getLimits();
      assertThat(limits).as(c.getName()).doesNotContainKey("nvidia.com/gpu");
    }
    // The slots' page-locked host memory, on every GPU of the claim, fits in the sidecar's memory
    // limit with 1 GiB to spare.
    long limit = Quantity.getAmountInBytes(sidecar(trainer).getResources().getLimits().get("memory"))
        .longValueExact();
    assertThat(limit).isGreaterThan(gpus.getCount()
        * config.gpuSlots() * CudaQuantizer.slotBytes(Quantizers.GPU_BAND_BYTES) + (1L << 30));
    // The engine on the same node reads the same host staging path, as in colocated.
    PodSpec sglang = r.named(Deployment.class, "sglang").getSpec().getTemplate().getSpec();
    assertThat(volume(sglang, mount(sglang.getContainers().get(0), config.stagingDir().toString())
        .getName()).getHostPath().getPath()).isEqualTo(volume(trainer,
        mount(sidecar(trainer), config.stagingDir().toString()).getName()).getHostPath().getPath());
    checkReferences(r);
    checkDashboard(r);
  }

  @Test
  void disaggregated() throws Exception {
    Rendered r = render("disaggregated");
    SidecarConfig trainerSide = checkSidecar(r,
        r.named(Deployment.class, "trainer").getSpec().getTemplate().getSpec());
    assertThat(trainerSide.role()).isEqualTo(Role.TRAINER);
    assertThat(trainerSide.relayTokenFile()).isEqualTo(trainerSide.authTokenFile());
    PodSpec sglang = r.named(Deployment.class, "sglang").getSpec().getTemplate().getSpec();
    SidecarConfig engineSide = checkSidecar(r, sglang);
    assertThat(engineSide.role()).isEqualTo(Role.ENGINE);
    Container engine = sglang.getContainers().get(0);
    assertThat(engineSide.sglangUrls()).containsExactly("http://127.0.0.1:" + port(engine, "http"));
    // Staging: an in-memory emptyDir shared by the sidecar and the engine.
    Volume staging = volume(sglang, mount(sidecar(sglang), engineSide.stagingDir().toString()).getName());
    assertThat(staging.getEmptyDir().getMedium()).isEqualTo("Memory");
    assertThat(mount(engine, engineSide.stagingDir().toString()).getName()).isEqualTo(staging.getName());
    // The relay finds every engine-side sidecar through a headless Service on their gRPC port.
    assertThat(trainerSide.relayTo()).hasSize(1);
    RelayTarget target = RelayTarget.parse(trainerSide.relayTo().get(0));
    assertThat(target.everyAddress()).isTrue();
    assertThat(target.host()).isEqualTo("weightsync-engine." + NAMESPACE + ".svc.cluster.local");
    Service headless = r.named(Service.class, "weightsync-engine");
    assertThat(headless.getSpec().getClusterIP()).isEqualTo("None");
    ServicePort grpc = headless.getSpec().getPorts().stream()
        .filter(p -> p.getPort() == target.port()).findFirst().orElseThrow();
    assertThat(grpc.getTargetPort().getStrVal()).isEqualTo("grpc");
    PodDisruptionBudget pdb = r.named(PodDisruptionBudget.class, "sglang");
    assertThat(selects(pdb.getSpec().getSelector().getMatchLabels(),
        r.named(Deployment.class, "sglang").getSpec().getTemplate().getMetadata().getLabels())).isTrue();
    NetworkPolicy np = r.named(NetworkPolicy.class, "weightsync-engine");
    assertThat(np.getSpec().getIngress()).anySatisfy(rule -> {
      assertThat(rule.getPorts()).singleElement()
          .satisfies(p -> assertThat(p.getPort().getStrVal()).isEqualTo("grpc"));
      assertThat(rule.getFrom()).singleElement().satisfies(peer -> assertThat(selects(
          peer.getPodSelector().getMatchLabels(), r.named(Deployment.class, "trainer").getSpec()
              .getTemplate().getMetadata().getLabels())).isTrue());
    });
    checkReferences(r);
    checkDashboard(r);
  }

  /** The Grafana dashboard ConfigMap holds valid JSON that queries the sidecar's metrics. */
  private static void checkDashboard(Rendered r) throws Exception {
    ConfigMap dashboard = r.all(ConfigMap.class).stream()
        .filter(c -> "1".equals(c.getMetadata().getLabels().get("grafana_dashboard")))
        .findFirst().orElseThrow();
    String json = dashboard.getData().get("weightsync.json");
    assertThat(new ObjectMapper().readTree(json).path("panels").size()).isPositive();
    assertThat(json).contains("weightsync_update_duration_seconds").contains("weightsync_weight_version");
  }
}
