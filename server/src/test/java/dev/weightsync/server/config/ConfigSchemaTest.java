package dev.weightsync.server.config;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.annotation.JsonProperty;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** The schema is the one list of keys: the config record and the README's table agree with it. */
class ConfigSchemaTest {

  @Test
  void everyFieldOfTheConfigIsAKeyOfTheSchemaAndBack() {
    List<String> fields = Arrays.stream(SidecarConfig.class.getRecordComponents())
        .map(c -> c.getAccessor().getAnnotation(JsonProperty.class).value()).toList();
    assertThat(fields).containsExactlyInAnyOrderElementsOf(
        ConfigSchema.KEYS.stream().map(ConfigSchema.Key::name).toList());
  }

  /**
   * The README's configuration table names every key, and no other, with the schema's default.
   * A row may name several keys ({@code `a` / `b`}) with one default for all or one each.
   */
  @Test
  void theReadmeTableListsEveryKeyWithItsDefault() throws Exception {
    String readme = Files.readString(Path.of("..", "README.md"));
    int start = readme.indexOf("| key | default | meaning |");
    assertThat(start).as("the README's configuration table").isPositive();
    Map<String, String> documented = new LinkedHashMap<>();
    for (String row : readme.substring(start).lines().skip(2).takeWhile(l -> l.startsWith("|"))
        .toList()) {
      String[] cells = row.split("\\|");
      List<String> keys = new ArrayList<>();
      Matcher m = Pattern.compile("`([a-z0-9-]+)`").matcher(cells[1]);
      while (m.find()) {
        keys.add(m.group(1));
      }
      String[] defaults = cells[2].trim().split(" / ");
      for (int i = 0; i < keys.size(); i++) {
        String d = defaults.length == keys.size() ? defaults[i] : defaults[0];
        documented.put(keys.get(i), d.trim());
      }
    }
    Map<String, String> schema = new LinkedHashMap<>();
    for (ConfigSchema.Key k : ConfigSchema.KEYS) {
      schema.put(k.name(), k.shownDefault() == null ? "–" : k.shownDefault());
    }
    assertThat(documented).containsExactlyInAnyOrderEntriesOf(schema);
  }
}
