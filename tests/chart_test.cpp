// Tests of the SVG chart renderer: number formatting, tick choice on linear and log
// axes, the legend, odd input (no series, gaps, values a log axis cannot show, text
// that needs escaping) and well-formed, deterministic output.
#include "report/chart.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace whtlm::report {
namespace {

namespace fs = std::filesystem;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A tick label or any other text element with exactly this content.
bool has_text(const std::string& svg, const std::string& text) {
  return contains(svg, ">" + text + "</text>");
}

// Whether Python's XML parser accepts the document; skips the test without python3.
void expect_well_formed(const std::string& svg) {
  const fs::path python = "/usr/bin/python3";
  if (!fs::exists(python)) GTEST_SKIP() << "no /usr/bin/python3 to check the XML with";
  static int counter = 0;
  const fs::path file =
      fs::temp_directory_path() /
      ("whtlm_chart_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".svg");
  {
    std::ofstream out(file, std::ios::binary);
    out << svg;
  }
  const std::string command =
      python.string() + " -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' " +
      file.string();
  const int status = std::system(command.c_str());
  fs::remove(file);
  EXPECT_EQ(status, 0) << "not well-formed XML:\n" << svg;
}

// Three series over 1e9..1e12 FLOPs: one with a band, one dashed, one without markers.
Chart scaling_chart() {
  Chart c;
  c.title = "Validation loss against compute";
  c.x = {"training FLOPs", true, {}, {}};
  c.y = {"validation loss", false, {}, {}};
  c.note = "3 seeds per point; band: min to max";
  const std::vector<double> x = {1e9, 1e10, 1e11, 1e12};
  Series dense{
      "dense", "#1f77b4", x, {4.1, 3.6, 3.2, 2.9}, {4.0, 3.5, 3.1, 2.85}, {4.2, 3.7, 3.3, 2.95}};
  Series wht{"wht", "#d62728", x, {4.15, 3.62, 3.22, 2.93}, {}, {}};
  wht.dashed = true;
  Series identity{"identity", "#2ca02c", x, {4.3, 3.8, 3.4, 3.1}, {}, {}};
  identity.markers = false;
  c.series = {dense, wht, identity};
  return c;
}

TEST(Chart, SiNumberUsesSuffixesFromThousandUp) {
  EXPECT_EQ(si_number(1e9), "1G");
  EXPECT_EQ(si_number(2.5e12), "2.5T");
  EXPECT_EQ(si_number(1.5e12), "1.5T");
  EXPECT_EQ(si_number(2048), "2.05k");
  EXPECT_EQ(si_number(1e6), "1M");
  EXPECT_EQ(si_number(3e15), "3P");
  EXPECT_EQ(si_number(1000), "1k");
  EXPECT_EQ(si_number(999.96), "1k");  // rounds up into the next suffix
  EXPECT_EQ(si_number(123456, 2), "120k");
}

TEST(Chart, SiNumberPrintsPlainDecimalsBelowThousand) {
  EXPECT_EQ(si_number(0.001), "0.001");
  EXPECT_EQ(si_number(1.456), "1.46");
  EXPECT_EQ(si_number(0.25), "0.25");
  EXPECT_EQ(si_number(123), "123");
  EXPECT_EQ(si_number(123.4), "123");
  EXPECT_EQ(si_number(1.0), "1");
  EXPECT_EQ(si_number(0), "0");
  EXPECT_EQ(si_number(0.1 * 3), "0.3");
  EXPECT_EQ(si_number(1.5e-7), "1.5e-7");  // very small or large: exponent notation
  EXPECT_EQ(si_number(2e21), "2e21");
  EXPECT_EQ(si_number(1e-6), "0.000001");
}

TEST(Chart, SiNumberKeepsTheSignAndNamesNonFiniteValues) {
  EXPECT_EQ(si_number(-2048), "-2.05k");
  EXPECT_EQ(si_number(-0.25), "-0.25");
  EXPECT_EQ(si_number(kNaN), "nan");
  EXPECT_EQ(si_number(kInf), "inf");
  EXPECT_EQ(si_number(-kInf), "-inf");
}

TEST(Chart, NormalLogChartIsWellFormed) {
  const std::string svg = render_svg(scaling_chart());
  EXPECT_TRUE(contains(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_TRUE(contains(svg, "stroke-dasharray=\"6 4\""));         // the dashed series
  EXPECT_TRUE(contains(svg, "<polygon"));                         // the band
  EXPECT_TRUE(contains(svg, "fill-opacity=\"0.18\""));            // drawn translucent
  EXPECT_TRUE(has_text(svg, "Validation loss against compute"));  // title
  EXPECT_TRUE(contains(svg, "rotate(-90)"));                      // the y axis label
  EXPECT_TRUE(has_text(svg, "3 seeds per point; band: min to max"));
  expect_well_formed(svg);
}

TEST(Chart, ChartWithoutSeriesSaysNoData) {
  Chart c;
  c.title = "empty";
  const std::string svg = render_svg(c);
  EXPECT_TRUE(has_text(svg, "no data"));
  expect_well_formed(svg);
}

TEST(Chart, NanAndNonPositiveValuesOnLogAxisAreSkipped) {
  Chart c;
  c.x.log = c.y.log = true;
  c.series = {{"gappy", "#000", {1, 10, 100, 1000, 1e4, -5}, {1, kNaN, 0.5, -1, kInf, 3}, {}, {}},
              {"all bad", "#f00", {0, -1}, {kNaN, 2}, {}, {}}};
  const std::string svg = render_svg(c);
  EXPECT_FALSE(contains(svg, "nan"));
  EXPECT_FALSE(contains(svg, "inf"));
  EXPECT_TRUE(has_text(svg, "all bad (no data)"));
  EXPECT_FALSE(has_text(svg, "no data"));  // the other series has points
  expect_well_formed(svg);
}

TEST(Chart, TextIsXmlEscaped) {
  Chart c = scaling_chart();
  c.title = "a <b> & \"c\" 'd'";
  c.x.label = "x<&>";
  c.y.label = "y\"'";
  c.note = "note & <more>";
  c.series[0].label = "<dense & 'quoted'>";
  const std::string svg = render_svg(c);
  EXPECT_TRUE(contains(svg, "a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;"));
  EXPECT_TRUE(contains(svg, "&lt;dense &amp; &apos;quoted&apos;&gt;"));
  EXPECT_FALSE(contains(svg, "<b>"));
  EXPECT_FALSE(contains(svg, "<dense"));
  expect_well_formed(svg);
}

TEST(Chart, LogAxisTicksArePowersOfTen) {
  const std::string svg = render_svg(scaling_chart());
  for (const char* label : {"1G", "10G", "100G", "1T"}) EXPECT_TRUE(has_text(svg, label)) << label;
  // Three decades are labelled with powers of ten only.
  EXPECT_FALSE(has_text(svg, "2G"));
  EXPECT_FALSE(has_text(svg, "5G"));
}

TEST(Chart, LogAxisUnderTwoDecadesAddsTwoAndFiveMultiples) {
  Chart c;
  c.x.log = true;
  c.series = {{"s", "#000", {1, 3, 10, 30}, {1, 2, 3, 4}, {}, {}}};
  const std::string svg = render_svg(c);
  for (const char* label : {"1", "2", "5", "10", "20"}) EXPECT_TRUE(has_text(svg, label)) << label;
}

TEST(Chart, LogAxisWithinOneDecadeLabelsAtLeastThreeTicks) {
  Chart c;
  c.y.log = true;
  c.series = {{"s", "#000", {1, 2, 3}, {3, 4.5, 7}, {}, {}}};
  const std::string svg = render_svg(c);
  int y_labels = 0;
  for (const char* label : {"3", "3.5", "4", "4.5", "5", "5.5", "6", "6.5", "7"}) {
    y_labels += has_text(svg, label) ? 1 : 0;
  }
  EXPECT_GE(y_labels, 3);
}

TEST(Chart, LinearAxisTicksAreNiceNumbers) {
  Chart c;
  c.series = {{"ratio", "#000", {0, 1, 2, 3}, {0.93, 1.0, 1.1, 1.21}, {}, {}}};
  const std::string svg = render_svg(c);
  for (const char* label : {"0.95", "1", "1.05", "1.1", "1.15", "1.2"}) {
    EXPECT_TRUE(has_text(svg, label)) << label;
  }
  EXPECT_FALSE(contains(svg, "0.9500"));
  EXPECT_FALSE(contains(svg, "1.1000"));
  // x from 0 to 3: whole or half steps.
  for (const char* label : {"0", "0.5", "1.5", "2.5", "3"})
    EXPECT_TRUE(has_text(svg, label)) << label;
}

TEST(Chart, LinearAxisTicksUseSiSuffixesForLargeValues) {
  Chart c;
  c.series = {{"tokens/s", "#000", {0, 1}, {1.2e6, 2.6e6}, {}, {}}};
  const std::string svg = render_svg(c);
  for (const char* label : {"1.2M", "1.6M", "2M", "2.4M"})
    EXPECT_TRUE(has_text(svg, label)) << label;
}

TEST(Chart, AxisMinMaxOverrideTheDataRange) {
  Chart c;
  c.y.min = 0;
  c.y.max = 10;
  c.series = {{"s", "#000", {0, 1}, {4, 6}, {}, {}}};
  const std::string svg = render_svg(c);
  for (const char* label : {"0", "2", "4", "6", "8", "10"})
    EXPECT_TRUE(has_text(svg, label)) << label;
}

TEST(Chart, LegendListsEverySeriesAndMarksEmptyOnes) {
  Chart c = scaling_chart();
  c.series.push_back({"pending", "#9467bd", {}, {}, {}, {}});
  const std::string svg = render_svg(c);
  for (const char* label : {"dense", "wht", "identity", "pending (no data)"}) {
    EXPECT_TRUE(has_text(svg, label)) << label;
  }
  EXPECT_FALSE(has_text(svg, "dense (no data)"));
  expect_well_formed(svg);
}

TEST(Chart, ReferenceLineIsDottedAndExtendsTheRange) {
  Chart c;
  c.series = {{"ratio", "#000", {1, 2, 3}, {1.3, 1.4, 1.5}, {}, {}}};
  c.y_reference = 1.0;
  const std::string svg = render_svg(c);
  EXPECT_TRUE(contains(svg, "stroke-dasharray=\"2 3\""));
  EXPECT_TRUE(has_text(svg, "1"));  // the range reaches down to the reference
  expect_well_formed(svg);
}

TEST(Chart, SameInputGivesIdenticalOutput) {
  EXPECT_EQ(render_svg(scaling_chart()), render_svg(scaling_chart()));
  Chart empty;
  EXPECT_EQ(render_svg(empty), render_svg(empty));
}

TEST(Chart, CoordinatesHaveAtMostOneDecimal) {
  const std::string svg = render_svg(scaling_chart());
  // Outside text content, the only number with two decimals is the band's opacity.
  std::string markup;
  bool in_text = false;
  for (char ch : svg) {
    if (ch == '<' || ch == '>') in_text = ch == '>';
    if (!in_text) markup += ch;
  }
  for (std::size_t dot = markup.find('.'); dot != std::string::npos;
       dot = markup.find('.', dot + 1)) {
    std::size_t end = dot + 1;
    while (end < markup.size() && std::isdigit(static_cast<unsigned char>(markup[end]))) ++end;
    if (end - dot > 2) {
      EXPECT_EQ(markup.substr(dot - 1, end - dot + 1), "0.18");
    }
  }
}

}  // namespace
}  // namespace whtlm::report
