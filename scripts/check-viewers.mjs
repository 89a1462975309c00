// Opens the demo's trace in speedscope, in headless Chromium, as a person
// would, and fails unless every thread's profile imports and shows the
// function its hang was injected in, under its hang. Run by
// scripts/check-viewers (which installs speedscope and playwright-core
// beside this file's copy and serves the files); not by CI.
//
//   node check-viewers.mjs BASE_URL TRACE_NAME SCREENSHOT.png
//
// For each profile speedscope makes of the trace (one per process and
// thread, named "child-0 (pid 123), layout#0 (tid 456)"), in its Time Order
// view (the flame chart in time), it searches the function the demo's loop
// of that kind hangs in and selects its matches in turn; speedscope zooms
// the chart to the selected frame and shows its stack in its detail panel,
// which is page text. The check passes when, in every process, each of the
// three loops shows its function with the hang's slice
// ("Hang: permanent in "reflow"") among its callers, and speedscope logged
// no broken nesting while importing. The screenshot is the first process's
// layout thread, zoomed to its hung frame.

import { chromium } from 'playwright-core'

const [base, traceName, screenshot] = process.argv.slice(2)
if (!base || !traceName || !screenshot) {
  console.error('usage: node check-viewers.mjs BASE_URL TRACE_NAME SCREENSHOT.png')
  process.exit(2)
}

// What the demo injects (crates/hangwatch-scenario/src/plan.rs): the loop,
// the function it hangs in, and the hang's slice.
const HUNG = {
  script: { fn: 'run_long_script_task', hang: 'Hang: transient in "run script"' },
  layout: { fn: 'reflow_stuck_on_lock', hang: 'Hang: permanent in "reflow"' },
  network: { fn: 'read_from_slow_socket', hang: 'Hang: permanent in "read response"' },
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Root needs --no-sandbox; SwiftShader gives speedscope its WebGL.
  args: ['--no-sandbox', '--enable-unsafe-swiftshader', '--use-angle=swiftshader'],
})
const failures = []
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } })
  const warnings = []
  page.on('console', (message) => {
    if (message.type() === 'warning' || message.type() === 'error') warnings.push(message.text())
  })
  page.on('pageerror', (error) => warnings.push(`page error: ${error.message}`))

  const profileURL = `${base}/${traceName}`
  await page.goto(`${base}/index.html#profileURL=${encodeURIComponent(profileURL)}&view=time-ordered`)
  // The toolbar says which profile is shown: "NAME (1/12)".
  await page.waitForFunction(() => /\(1\/\d+\)/.test(document.body.innerText), null, {
    timeout: 60_000,
  })
  const broken = warnings.filter((w) => /Tried to end|still open|rror/.test(w))
  if (broken.length > 0) {
    failures.push(`speedscope's import warned ${broken.length} times, first: ${broken[0]}`)
  }

  const shown = async () => {
    const text = await page.evaluate(() => document.body.innerText)
    const match = /^(.+ \(pid \d+\)), ((\w+)#\d+) \(tid \d+\) \((\d+)\/(\d+)\)$/m.exec(text)
    if (!match) throw new Error(`no profile name in the toolbar:\n${text.slice(0, 500)}`)
    const [, process, thread, kind, index, count] = match
    return { process, thread, kind, index: Number(index), count: Number(count) }
  }

  // The detail panel's stack of the selected frame `fn`: the frame, then its
  // callers, outermost last.
  const selectedStack = (text, fn) => {
    const lines = text.split('\n')
    const first = lines.findIndex((line) => line.endsWith(fn) && !line.startsWith('>'))
    if (first < 0) return []
    const stack = [lines[first]]
    for (const line of lines.slice(first + 1)) {
      if (!line.startsWith('> ')) break
      stack.push(line.slice(2))
    }
    return stack
  }

  // Searches `fn` and selects its matches in turn (the search box says
  // "2/5") until one has `hang` among its callers: that instance's stack,
  // how many instances were looked at, and how many there are.
  const findUnder = async (fn, hang) => {
    await page.keyboard.press('Control+f')
    // Into the search box itself: a key that reaches the page is a shortcut
    // ('n' is the next profile).
    const search = page.locator('input:not([type=file]):not([placeholder])')
    await search.fill(fn)
    const count = /^(?:\?|\d+)\/(\d+)$/m
    await page.waitForFunction((source) => new RegExp(source, 'm').test(document.body.innerText), count.source)
    const total = Number(count.exec(await page.evaluate(() => document.body.innerText))[1])
    let stack = []
    for (let k = 1; k <= Math.min(total, 50); k++) {
      await search.press('Enter')
      await page.waitForFunction((k) => new RegExp(`^${k}/\\d+$`, 'm').test(document.body.innerText), k)
      stack = selectedStack(await page.evaluate(() => document.body.innerText), fn)
      if (stack.some((frame) => frame.startsWith(hang))) return { stack, seen: k, total, under: true }
    }
    return { stack, seen: Math.min(total, 50), total, under: false }
  }

  const seen = new Map()
  let { count } = await shown()
  for (let index = 1; index <= count; index++) {
    const profile = await shown()
    if (profile.index !== index) throw new Error(`expected profile ${index}, speedscope shows ${profile.index}`)
    const expected = HUNG[profile.kind]
    if (!seen.has(profile.process)) seen.set(profile.process, {})
    if (expected) {
      const found = await findUnder(expected.fn, expected.hang)
      seen.get(profile.process)[profile.kind] = found.under
      console.log(
        `check-viewers: ${profile.process}, ${profile.thread}: ` +
          (found.total === 0
            ? `${expected.fn} NOT FOUND`
            : found.under
              ? `${found.stack[0]}, ${found.stack.length - 1} frames under ` +
                `${expected.hang} (match ${found.seen} of ${found.total})`
              : `${expected.fn}: none of ${found.total} matches is under ${expected.hang}`),
      )
      // The search closed, the chart stays zoomed to the selected frame.
      await page.locator('input:not([type=file]):not([placeholder])').press('Escape')
      if (profile.kind === 'layout' && seen.size === 1 && found.under) {
        // The first process's layout thread: scrolled to the top, where the
        // hang's slice is, and zoomed out a little to show its ends.
        await page.mouse.move(800, 450)
        await page.mouse.wheel(0, -1000)
        await page.keyboard.down('Control')
        await page.mouse.wheel(0, 150)
        await page.keyboard.up('Control')
        await page.waitForTimeout(500)
        await page.screenshot({ path: screenshot })
      }
    }
    if (index < count) {
      await page.keyboard.press('n')
      await page.waitForFunction(
        (next) => new RegExp(`\\(${next}/\\d+\\)`).test(document.body.innerText),
        index + 1,
      )
    }
  }

  if (seen.size === 0) failures.push('no process in the trace')
  for (const [process, kinds] of seen) {
    for (const [kind, { fn }] of Object.entries(HUNG)) {
      if (kinds[kind] !== true) failures.push(`${process}: ${kind} does not show ${fn} under its hang`)
    }
  }
  console.log(`check-viewers: speedscope imported ${count} profiles of ${seen.size} processes`)
} finally {
  await browser.close()
}

if (failures.length > 0) {
  for (const failure of failures) console.error(`check-viewers: FAILED: ${failure}`)
  process.exit(1)
}
console.log(`check-viewers: speedscope shows every hung function under its hang; screenshot: ${screenshot}`)
